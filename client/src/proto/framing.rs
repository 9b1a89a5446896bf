//! Line framing, sans I/O: split a byte stream into newline-terminated
//! lines of at most a given length, buffering no more than that.
//!
//! Both ends of the client API read with it: the broker (requests, capped
//! at [`MAX_LINE`](super::MAX_LINE)) and the client (the broker's lines).
//! A line over the cap is reported as [`Frame::TooLong`] and skipped up to
//! its newline, so one oversized line costs the reader neither memory nor
//! the rest of the stream.

/// What the splitter found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its newline.
    Line(Vec<u8>),
    /// A line longer than the cap; its bytes were dropped.
    TooLong,
}

/// Splits a byte stream into lines of at most `max` bytes (newline
/// excluded). Feed it bytes as they arrive ([`feed`](Self::feed)), then
/// [`finish`](Self::finish) at the end of the stream.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    max: usize,
    line: Vec<u8>,
    too_long: bool,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            line: Vec::new(),
            too_long: false,
        }
    }

    /// The cap this splitter enforces.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Feed the next bytes of the stream. Returns how many of them were
    /// used and the frame they completed, if any. It stops right after the
    /// first newline, so a reader that consumes only the bytes used reads
    /// exactly one line; feed the rest again. `(bytes.len(), None)`: all
    /// used, no line complete yet.
    pub fn feed(&mut self, bytes: &[u8]) -> (usize, Option<Frame>) {
        let (chunk, used) = match bytes.iter().position(|b| *b == b'\n') {
            Some(i) => (&bytes[..i], i + 1),
            None => (bytes, bytes.len()),
        };
        if !self.too_long {
            if chunk.len() > self.max - self.line.len() {
                self.too_long = true;
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(chunk);
            }
        }
        let frame = (used > chunk.len()).then(|| self.take());
        (used, frame)
    }

    /// Feed `bytes` whole: every frame they complete, in order.
    pub fn feed_all(&mut self, mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let (used, frame) = self.feed(bytes);
            frames.extend(frame);
            bytes = &bytes[used..];
        }
        frames
    }

    /// The stream ended: a last line without a newline still counts (as
    /// [`Frame::TooLong`] if over the cap); `None` if nothing was pending.
    /// The splitter is then empty, as at the start.
    pub fn finish(&mut self) -> Option<Frame> {
        (self.too_long || !self.line.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Frame {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.too_long) {
            Frame::TooLong
        } else {
            Frame::Line(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    fn split(max: usize, bytes: &[u8]) -> Vec<Frame> {
        let mut s = LineSplitter::new(max);
        let mut frames = s.feed_all(bytes);
        frames.extend(s.finish());
        frames
    }

    #[test]
    fn long_lines_are_skipped_whole_and_the_stream_goes_on() {
        assert_eq!(
            split(5, b"ab\n0123456789\ncd\nlast"),
            vec![line("ab"), Frame::TooLong, line("cd"), line("last")]
        );
        assert_eq!(split(5, b""), vec![]);
        assert_eq!(split(5, b"123456"), vec![Frame::TooLong]);
    }

    #[test]
    fn the_cap_is_exact() {
        assert_eq!(split(5, b"12345\n"), vec![line("12345")]);
        assert_eq!(split(5, b"123456\n"), vec![Frame::TooLong]);
        assert_eq!(
            split(0, b"\n\nx\n"),
            vec![line(""), line(""), Frame::TooLong]
        );
    }

    #[test]
    fn empty_lines_count_but_an_empty_tail_does_not() {
        assert_eq!(split(5, b"\n\n"), vec![line(""), line("")]);
        assert_eq!(split(5, b"a\n"), vec![line("a")]);
    }

    #[test]
    fn feed_stops_after_the_first_newline() {
        let mut s = LineSplitter::new(5);
        assert_eq!(s.feed(b"ab\ncd\n"), (3, Some(line("ab"))));
        assert_eq!(s.feed(b"cd\n"), (3, Some(line("cd"))));
        assert_eq!(s.feed(b"ef"), (2, None));
        assert_eq!(s.finish(), Some(line("ef")));
        assert_eq!(s.finish(), None, "finish empties the splitter");
    }

    #[test]
    fn a_line_split_across_feeds_is_joined_and_capped_as_a_whole() {
        let mut s = LineSplitter::new(5);
        assert_eq!(s.feed(b"abc"), (3, None));
        assert_eq!(s.feed(b"de"), (2, None));
        assert_eq!(s.feed(b"\n"), (1, Some(line("abcde"))));
        assert_eq!(s.feed(b"abc"), (3, None));
        assert_eq!(s.feed(b"def"), (3, None));
        assert!(s.line.is_empty(), "nothing kept once over the cap");
        assert_eq!(s.feed(b"g\nok\n"), (2, Some(Frame::TooLong)));
        assert_eq!(s.feed_all(b"ok\n"), vec![line("ok")]);
    }
}
