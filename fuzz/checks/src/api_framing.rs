//! The client API's line framing (`LineSplitter`). Input: `[cap, k, k
//! chunk sizes, stream]`. No line exceeds the cap or holds a newline;
//! feeding the stream in chunks of the given sizes (empty ones included)
//! gives the same frames as feeding it at once; each frame is one line of
//! the stream, in order; and the lines joined by their newlines are the
//! stream minus the lines over the cap.

use p2pbroker_client::framing::{Frame, LineSplitter};

/// One input.
pub fn run(data: &[u8]) {
    let [cap, k, rest @ ..] = data else {
        return;
    };
    let cap = usize::from(*cap);
    let (sizes, stream) = rest.split_at(usize::from(*k).min(rest.len()));

    let mut whole = LineSplitter::new(cap);
    let mut at_once = whole.feed_all(stream);
    at_once.extend(whole.finish());
    assert_eq!(whole.finish(), None, "finish empties the splitter");

    assert_eq!(chunked(cap, sizes, stream), at_once);

    let lines: Vec<&[u8]> = stream.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(at_once.len(), lines.len());
    let (mut joined, mut kept) = (Vec::new(), Vec::new());
    for (frame, line) in at_once.iter().zip(&lines) {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        match frame {
            Frame::Line(l) => {
                assert!(l.len() <= cap && !l.contains(&b'\n'));
                assert_eq!(l, body);
                joined.extend_from_slice(l);
                if line.ends_with(b"\n") {
                    joined.push(b'\n');
                }
            }
            Frame::TooLong => assert!(body.len() > cap),
        }
        if body.len() <= cap {
            kept.extend_from_slice(line);
        }
    }
    assert_eq!(joined, kept);
}

/// The frames of `stream` fed in chunks of `sizes` (cycled; a size of 0
/// feeds an empty chunk, then one byte).
fn chunked(cap: usize, sizes: &[u8], mut stream: &[u8]) -> Vec<Frame> {
    let mut s = LineSplitter::new(cap);
    let mut frames = Vec::new();
    let mut sizes = sizes.iter().cycle();
    while !stream.is_empty() {
        let size = sizes.next().map_or(stream.len(), |n| usize::from(*n));
        if size == 0 {
            assert_eq!(s.feed(&[]), (0, None));
        }
        let (mut chunk, tail) = stream.split_at(size.clamp(1, stream.len()));
        stream = tail;
        while !chunk.is_empty() {
            let (used, frame) = s.feed(chunk);
            assert!(used > 0 && used <= chunk.len());
            match &frame {
                Some(_) => assert_eq!(chunk[used - 1], b'\n'),
                None => assert_eq!(used, chunk.len()),
            }
            frames.extend(frame);
            chunk = &chunk[used..];
        }
    }
    frames.extend(s.finish());
    frames
}
