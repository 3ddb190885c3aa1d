//! A fault-injecting HTTP proxy on loopback, in front of the real RADOS
//! Gateway: each request it accepts takes the next scripted [`Fault`]
//! (then [`Fault::Pass`] once the script is used up). It is our own small
//! stand-in for a store under stress, not a copy of one: the answers it
//! makes up are S3's documented error bodies (`SlowDown`, `InternalError`),
//! and its cuts and stalls are what a network does to a connection.
//!
//! One request per connection: the request goes upstream with
//! `Connection: close`, so RGW's answer says the same and the client
//! never reuses a connection the proxy is about to drop.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Forward the request and the answer unchanged.
    Pass,
    /// Answer this status and S3 error code without asking upstream.
    Status(u16, &'static str),
    /// Read the request, then say nothing for this long and close.
    Stall(Duration),
    /// Read half the request body, then close: a cut mid-upload.
    CutMidUpload,
    /// Forward the request (it lands upstream), then close without the answer.
    CutAfterForward,
    /// Forward, then pass only half the answer's body and close.
    CutMidDownload,
}

pub struct Proxy {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Fault>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Listen on a free loopback port, forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v, up) = (script.clone(), seen.clone(), upstream.to_string());
        // The accept loop lives as long as the test process; each test
        // has its own proxy and port.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let fault = s.lock().unwrap().pop_front().unwrap_or(Fault::Pass);
                let (v, up) = (v.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &up, fault, &v);
                });
            }
        });
        Proxy { addr, script, seen }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults for the next requests, in order.
    pub fn script(&self, faults: &[Fault]) {
        self.script.lock().unwrap().extend(faults.iter().cloned());
    }

    /// Request lines seen so far (`PUT /bucket/key` …), and forget them.
    pub fn take_seen(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The request's head (through the blank line) and its Content-Length.
fn read_head(c: &mut TcpStream) -> std::io::Result<(Vec<u8>, usize, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        let n = c.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            let len = content_length(&buf);
            return Ok((buf, len, rest));
        }
        assert!(buf.len() < 1 << 16, "request head too long");
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for l in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn read_body(c: &mut TcpStream, mut got: Vec<u8>, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < len {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

fn handle(
    mut c: TcpStream,
    up: &str,
    fault: Fault,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let (head, len, rest) = read_head(&mut c)?;
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let line = line
        .rsplit_once(' ')
        .map(|(a, _)| a.to_string())
        .unwrap_or(line);
    seen.lock().unwrap().push(format!("{line} [{fault:?}]"));
    if let Fault::CutMidUpload = fault {
        let _ = read_body(&mut c, rest, len / 2);
        return c.shutdown(Shutdown::Both);
    }
    let body = read_body(&mut c, rest, len)?;
    match fault {
        Fault::Status(status, code) => {
            let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>");
            let resp = format!("HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}", xml.len());
            c.write_all(resp.as_bytes())?;
            c.shutdown(Shutdown::Both)
        }
        Fault::Stall(d) => {
            std::thread::sleep(d);
            c.shutdown(Shutdown::Both)
        }
        _ => forward(c, up, &head, &body, &fault, line.starts_with("HEAD")),
    }
}

fn forward(
    mut c: TcpStream,
    up: &str,
    head: &[u8],
    body: &[u8],
    fault: &Fault,
    is_head: bool,
) -> std::io::Result<()> {
    let mut u = TcpStream::connect(up)?;
    u.write_all(&closing(head))?;
    u.write_all(body)?;
    let mut answer = Vec::new();
    u.read_to_end(&mut answer)?;
    match fault {
        Fault::CutAfterForward => {}
        Fault::CutMidDownload if !is_head => {
            let i = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |i| i + 4);
            let keep = i + (answer.len() - i) / 2;
            c.write_all(&answer[..keep])?;
        }
        _ => c.write_all(&answer)?,
    }
    c.shutdown(Shutdown::Both)
}
