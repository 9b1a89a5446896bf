//! The async pump around the sans-I/O [`LineSplitter`]: read a stream line
//! by line under a length cap. The client reads the broker with it, and the
//! broker its clients.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::proto::framing::{Frame, LineSplitter};

/// Read the next line from `r` through `splitter`, consuming exactly the
/// bytes up to and including its newline (the rest stays in `r`). `None`
/// at the end of the stream; a last line without a newline still counts.
/// Never buffers more than the splitter's cap, however long the line.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    r: &mut R,
    splitter: &mut LineSplitter,
) -> std::io::Result<Option<Frame>> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(splitter.finish());
        }
        let (used, frame) = splitter.feed(buf);
        r.consume(used);
        if frame.is_some() {
            return Ok(frame);
        }
    }
}
