//! Requests followed by a data stream (`PutSession`, `Dedup`): the pipe
//! towards the agent is lent to the stream's writer until it is handed back.

use super::{AgentConn, Writer};
use anyhow::{bail, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{FrameWriter, Request, Response};

impl AgentConn {
    /// Start a session upload: the returned writer carries the tar stream;
    /// hand it back to [`AgentConn::finish_upload`].
    pub fn start_upload(
        &mut self,
        vol: &VolName,
        session: &SessionName,
        expect_last: Option<&SessionName>,
        volume_uuid: &str,
        format: sparsebak_common::SessionFormat,
        resume_from: Option<&SessionName>,
    ) -> Result<FrameWriter<Writer>> {
        let req = Request::PutSession {
            vol: vol.clone(),
            session: session.clone(),
            expect_last: expect_last.cloned(),
            volume_uuid: Some(volume_uuid.into()),
            format,
            resume_from: resume_from.cloned(),
        };
        self.w()?;
        if let Err(e) = self.send_req(&req) {
            return Err(self.lost(e));
        }
        Ok(FrameWriter::new(self.w.take().expect("pipe available")))
    }

    /// Close the upload stream; returns the agent's count of files and bytes stored.
    pub fn finish_upload(&mut self, fw: FrameWriter<Writer>) -> Result<(u64, u64)> {
        let w = fw.finish().map_err(|e| self.lost(e))?;
        self.w = Some(w);
        match self.expect_reply()? {
            Response::Stored { files, bytes } => Ok((files, bytes)),
            r => bail!("unexpected answer to PutSession: {r:?}"),
        }
    }

    /// Send a request followed by a data stream (`Dedup`); the returned
    /// writer carries the stream; hand it back to [`AgentConn::finish_stream`].
    pub fn start_stream(&mut self, req: &Request) -> Result<FrameWriter<Writer>> {
        self.w()?;
        if let Err(e) = self.send_req(req) {
            return Err(self.lost(e));
        }
        Ok(FrameWriter::new(self.w.take().expect("pipe available")))
    }

    /// Close a data stream and return the agent's answer.
    pub fn finish_stream(&mut self, fw: FrameWriter<Writer>) -> Result<Response> {
        let w = fw.finish().map_err(|e| self.lost(e))?;
        self.w = Some(w);
        self.expect_reply()
    }

    /// Turn a write error during an upload into the agent's stated reason.
    pub fn upload_failed(&mut self, e: std::io::Error) -> anyhow::Error {
        self.lost(e)
    }
}
