//! The dom0 end of the agent protocol for tests: messages out on a writer,
//! replies in on a reader. The agent suites run the agent two ways (in-process
//! `serve` on a socket pair, or the real binary as a child process so a test
//! hook's `abort()` kills only the agent); both talk through a [`Peer`].

// Requests as the wire carries them: names are strings, valid or not, so the
// agent tests can send names a typed `Request` could not hold.
use sparsebak_common::proto::{
    recv_msg, send_msg, RawRequest as Request, Response, PROTOCOL_VERSION,
};
use std::io::{Read, Write};

pub struct Peer<R: Read, W: Write> {
    /// Replies from the agent.
    pub r: R,
    /// Requests to the agent; `None` once closed with [`Peer::close`].
    pub w: Option<W>,
}

impl<R: Read, W: Write> Peer<R, W> {
    pub fn new(r: R, w: W) -> Self {
        Peer { r, w: Some(w) }
    }

    /// The writer; panics after [`Peer::close`].
    pub fn writer(&mut self) -> &mut W {
        self.w.as_mut().expect("the pipe to the agent was closed")
    }

    /// Close our writing end (the agent sees end of input).
    pub fn close(&mut self) {
        self.w = None;
    }

    pub fn send(&mut self, req: &Request) -> std::io::Result<()> {
        send_msg(self.writer(), req)
    }

    /// The next reply; `Ok(None)` if the agent closed the pipe.
    pub fn recv(&mut self) -> std::io::Result<Option<Response>> {
        recv_msg(&mut self.r)
    }

    /// Send a request and read its reply; `None` if the agent died or closed
    /// the pipe before answering.
    pub fn try_call(&mut self, req: &Request) -> Option<Response> {
        self.send(req).ok()?;
        self.recv().ok().flatten()
    }

    /// Send a request and read its reply; panics if there is none.
    pub fn call(&mut self, req: &Request) -> Response {
        self.try_call(req)
            .unwrap_or_else(|| panic!("the agent closed the pipe instead of answering {req:?}"))
    }

    /// `Hello` with this build's protocol version; the agent's reply.
    pub fn hello(&mut self) -> Response {
        self.call(&Request::Hello {
            protocol: PROTOCOL_VERSION,
        })
    }

    /// `Open` the archive at `dest` on the file system mounted at `mountpoint`.
    pub fn open(&mut self, dest: &str, mountpoint: &str, write: bool) -> Response {
        self.call(&Request::Open {
            dest_path: dest.into(),
            mountpoint: mountpoint.into(),
            write,
        })
    }
}
