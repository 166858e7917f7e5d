//! The webhook client against real TCP (and TLS) servers that answer as each test
//! scripts: keep-alive, framing, stale connections, limits, timeouts, refusals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const T: Duration = Duration::from_secs(5);

/// What a scripted server does with the `n`th request on a connection.
#[derive(Clone)]
struct Reply {
    /// Written in turn, with a pause between, so the client reads in pieces.
    pieces: Vec<Vec<u8>>,
    /// Closes the connection after writing.
    close: bool,
}

fn reply(text: &str) -> Reply {
    Reply {
        pieces: vec![text.as_bytes().to_vec()],
        close: false,
    }
}

/// A server on loopback: how many connections it accepted and every request it read.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Answers the `n`th request of each connection with `script(n)`.
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (a, r, script) = (accepted.clone(), requests.clone(), Arc::new(script));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, r.clone(), script.clone()));
            }
        });
        Server {
            addr,
            accepted,
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn request(&self, n: usize) -> String {
        self.requests.lock().unwrap()[n].clone()
    }
}

async fn serve<S, F>(mut io: S, requests: Arc<Mutex<Vec<String>>>, script: Arc<F>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(usize) -> Reply,
{
    for n in 0.. {
        let Some(request) = read_request(&mut io).await else {
            return;
        };
        requests.lock().unwrap().push(request);
        let r = script(n);
        for piece in &r.pieces {
            if io.write_all(piece).await.is_err() {
                return;
            }
            let _ = io.flush().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if r.close {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// One request: its head and a body of its Content-Length.
async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await.ok()?;
    Some(head + String::from_utf8_lossy(&body).as_ref())
}

fn client() -> WebhookClient {
    WebhookClient::new().unwrap()
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn pairs(p: &[(&str, &str)]) -> Query {
    let mut q = Query::default();
    for (k, v) in p {
        q.push(k, v);
    }
    q
}

fn none() -> Query {
    Query::default()
}

#[tokio::test]
async fn requests_go_on_one_kept_connection_with_the_query_form_encoded() {
    let server = Server::start(|n| reply(&ok(&format!("answer {n}")))).await;
    let c = client();
    let url = server.url("/route?fixed=1");
    for n in 0..3 {
        let got = c
            .get(&url, &pairs(&[("CallSid", "CA 1&x"), ("To", "+91")]), T)
            .await
            .unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.body, format!("answer {n}").as_bytes());
    }
    assert_eq!(server.accepted(), 1, "one connection for three requests");
    let first = server.request(0);
    assert!(
        first.starts_with("GET /route?fixed=1&CallSid=CA+1%26x&To=%2B91 HTTP/1.1\r\n"),
        "{first}"
    );
    assert!(
        first.contains(&format!("\r\nHost: {}\r\n", server.addr)),
        "{first}"
    );
    assert!(
        first.contains(&format!("\r\nUser-Agent: {USER_AGENT}\r\n")),
        "{first}"
    );
    assert_eq!(c.pool.idle_count(), 1);
}

#[tokio::test]
async fn a_chunked_answer_in_pieces_with_extensions_and_trailers_is_read_whole() {
    let server = Server::start(|_| Reply {
        pieces: [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
            "lo\r\n",
            "7\r\n, world\r\n0\r\nX-Trailer: y\r\n",
            "\r\n",
        ]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect(),
        close: false,
    })
    .await;
    let c = client();
    for _ in 0..2 {
        let got = c.get(&server.url("/c"), &none(), T).await.unwrap();
        assert_eq!(got.body, b"hello, world");
    }
    assert_eq!(
        server.accepted(),
        1,
        "a chunked answer keeps the connection"
    );
}

#[tokio::test]
async fn connection_close_and_http_1_0_are_not_reused() {
    let closing = Server::start(|_| {
        reply("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    // HTTP/1.0 without a length: the body runs to the close.
    let old = Server::start(|_| Reply {
        close: true,
        ..reply("HTTP/1.0 200 OK\r\n\r\nuntil the end")
    })
    .await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(
            c.get(&closing.url("/"), &none(), T).await.unwrap().body,
            b"ok"
        );
        let got = c.get(&old.url("/"), &none(), T).await.unwrap();
        assert_eq!(got.body, b"until the end");
    }
    assert_eq!(closing.accepted(), 2);
    assert_eq!(old.accepted(), 2);
    assert_eq!(c.pool.idle_count(), 0);
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_without_an_error() {
    // Answers with keep-alive, then closes anyway (an idle timeout on its side).
    let server = Server::start(|_| Reply {
        close: true,
        ..reply(&ok("fine"))
    })
    .await;
    let c = client();
    for _ in 0..3 {
        let got = c.get(&server.url("/"), &none(), T).await.unwrap();
        assert_eq!(got.body, b"fine");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn a_kept_connection_with_something_unasked_on_it_is_not_used() {
    // After each answer, a 408 nobody asked for (as some servers send before they
    // close an idle connection), the connection left open.
    let server = Server::start(|_| Reply {
        pieces: vec![
            ok("fine").into_bytes(),
            b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ],
        close: false,
    })
    .await;
    let c = client();
    for _ in 0..2 {
        let got = c.get(&server.url("/"), &none(), T).await.unwrap();
        assert_eq!((got.status, got.body.as_slice()), (200, &b"fine"[..]));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn informational_answers_are_skipped() {
    let server = Server::start(|_| {
        reply(&format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n{}",
            ok("after")
        ))
    })
    .await;
    let got = client().get(&server.url("/"), &none(), T).await.unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, &b"after"[..]));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_get_and_its_status_kept_by_post() {
    let big = " ".repeat(MAX_BODY + 1);
    let server = Server::start(move |_| reply(&ok(&big))).await;
    // Chunked, each chunk small, the sum over the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 1024, "x".repeat(1024));
    let chunks = chunk.repeat(MAX_BODY / 1024 + 1);
    let chunked = Server::start(move |_| {
        reply(&format!(
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n"
        ))
    })
    .await;
    let c = client();
    let e = c.get(&server.url("/"), &none(), T).await.unwrap_err();
    assert_eq!(e, HttpError::TooLarge(MAX_BODY));
    let e = c.get(&chunked.url("/"), &none(), T).await.unwrap_err();
    assert_eq!(e, HttpError::TooLarge(MAX_BODY));
    let status = c
        .post(&chunked.url("/cb"), "application/json", b"{}".to_vec(), T)
        .await
        .unwrap();
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_post_carries_its_type_length_and_body() {
    let server = Server::start(|_| reply("HTTP/1.1 204 No Content\r\n\r\n")).await;
    let body = serde_json::json!({ "CallSid": "CA1" });
    let status = client()
        .post_json(&server.url("/status"), &body, T)
        .await
        .unwrap();
    assert_eq!(status, 204);
    let seen = server.request(0);
    assert!(seen.starts_with("POST /status HTTP/1.1\r\n"), "{seen}");
    assert!(
        seen.contains("\r\nContent-Type: application/json\r\n"),
        "{seen}"
    );
    assert!(seen.contains("\r\nContent-Length: 17\r\n"), "{seen}");
    assert!(seen.ends_with("\r\n\r\n{\"CallSid\":\"CA1\"}"), "{seen}");
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_as_basic_authorization() {
    let server = Server::start(|_| reply(&ok(""))).await;
    let url = format!("http://part%40ner:s%3Acret@{}/", server.addr);
    client().get(&url, &none(), T).await.unwrap();
    // base64("part@ner:s:cret")
    assert!(
        server
            .request(0)
            .contains("\r\nAuthorization: Basic cGFydEBuZXI6czpjcmV0\r\n"),
        "{}",
        server.request(0)
    );
}

#[tokio::test]
async fn malformed_answers_are_errors_not_panics() {
    let cases = [
        "HTTP/1.1 abc OK\r\n\r\n",
        "SIP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ];
    for case in cases {
        let server = Server::start(move |_| Reply {
            close: true,
            ..reply(case)
        })
        .await;
        match client().get(&server.url("/"), &none(), T).await {
            Err(HttpError::Other(why)) => assert!(!why.is_empty()),
            other => panic!("{case:?}: {other:?}"),
        }
    }
    // A head that never ends.
    let endless =
        Server::start(|_| reply(&format!("HTTP/1.1 200 OK\r\n{}", "X-A: b\r\n".repeat(3000))))
            .await;
    let e = client()
        .get(&endless.url("/"), &none(), T)
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Other(_)), "{e:?}");
}

#[tokio::test]
async fn silence_times_out_and_a_closed_port_is_a_connection_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let c = client();
    let url = format!("http://{silent}/");
    let e = c.get(&url, &none(), Duration::from_millis(200)).await;
    assert_eq!(e.unwrap_err(), HttpError::Timeout);
    drop(listener);
    match c.get(&url, &none(), T).await {
        Err(HttpError::Connect(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("{other:?}"),
    }
    // And a server that accepts and closes without a word.
    let mute = Server::start(|_| Reply {
        pieces: vec![],
        close: true,
    })
    .await;
    match c.get(&mute.url("/"), &none(), T).await {
        Err(HttpError::Connect(why)) => assert!(why.contains("closed"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_public_only_client_refuses_private_addresses_and_names() {
    let server = Server::start(|_| reply(&ok(""))).await;
    let c = WebhookClient::public_only().unwrap();
    for url in [
        server.url("/"),
        format!("http://localhost:{}/", server.addr.port()),
        "http://[::1]:9/".to_string(),
        "http://10.1.2.3/".to_string(),
    ] {
        match c.get(&url, &none(), T).await {
            Err(HttpError::Private(_)) => {}
            other => panic!("{url}: {other:?}"),
        }
    }
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn bad_urls_are_errors() {
    let c = client();
    for url in ["not a url", "ftp://example.com/x", "http://[::1/x"] {
        match c.get(url, &none(), T).await {
            Err(HttpError::Other(why)) => assert!(why.contains("URL"), "{why}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn targets_keep_the_default_port_out_of_host_and_brackets_out_of_the_origin() {
    let t = Endpoint::parse("https://example.com/a/b?x=1#frag").unwrap();
    assert_eq!(t.target(&pairs(&[("y", "2 3")])), "/a/b?x=1&y=2+3");
    assert_eq!(
        t.origin,
        Origin {
            tls: true,
            host: "example.com".into(),
            port: 443
        }
    );
    assert_eq!(
        (t.host.as_str(), t.path.as_str()),
        ("example.com", "/a/b?x=1")
    );
    let t = Endpoint::parse("http://[::1]:8080").unwrap();
    assert_eq!(
        t.origin,
        Origin {
            tls: false,
            host: "::1".into(),
            port: 8080
        }
    );
    assert_eq!((t.host.as_str(), t.path.as_str()), ("[::1]:8080", "/"));
    assert!(t.authorization.is_none());
    assert_eq!(t.target(&pairs(&[("a", "1"), ("b", "&")])), "/?a=1&b=%26");
    let empty_query = Endpoint::parse("http://h/x?").unwrap();
    assert_eq!(empty_query.target(&pairs(&[("a", "1")])), "/x?a=1");
    assert_eq!(empty_query.target(&none()), "/x?");
}

#[tokio::test]
async fn https_is_verified_against_the_roots() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, seen, Arc::new(|_| reply(&ok("secure")))).await;
                }
            });
        }
    });
    let url = format!("https://localhost:{port}/hook");
    // Not trusted: the default roots do not hold a self-signed certificate.
    match client().get(&url, &none(), T).await {
        Err(HttpError::Connect(why)) => assert!(why.contains("TLS"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let trusting = WebhookClient::with_roots(roots, false).unwrap();
    for _ in 0..2 {
        let got = trusting.get(&url, &none(), T).await.unwrap();
        assert_eq!(got.body, b"secure");
    }
    assert_eq!(requests.lock().unwrap().len(), 2);
    assert_eq!(trusting.pool.idle_count(), 1, "the TLS connection is kept");
}

#[test]
fn endpoints_kept_are_bounded() {
    let endpoints = Endpoints::default();
    for n in 0..MAX_ENDPOINTS + 10 {
        endpoints.get(&format!("http://h/{n}")).unwrap();
    }
    let kept = endpoints.0.lock().unwrap().len();
    assert!(kept <= MAX_ENDPOINTS && kept > 0, "{kept}");
    assert!(endpoints.get("gopher://h/").is_err());
}
