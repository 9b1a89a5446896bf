//! Chunked bodies (RFC 9112 §7.1): Transfer-Encoding spelled in any case,
//! padded, beside unsupported codings or repeated, a Content-Length beside
//! it; chunk sizes in either case, with leading zeros, whitespace and
//! extensions; one hostile chunk (sizes like `ffffffffffffffff` or
//! `7fffffff`, a missing CRLF, an overlong size line); the last chunk
//! present or not, trailers after it.

use arbitrary::Arbitrary;

use super::framing::{Case, Expect, complete};

/// A chunked body and its headers.
#[derive(Arbitrary, Debug)]
pub struct Chunked {
    te: Te,
    case: Case,
    /// A Content-Length beside it: Transfer-Encoding wins (RFC 9112 §6.3).
    length_too: Option<u32>,
    sizes: Vec<u16>,
    styles: Vec<ChunkStyle>,
    /// A hostile chunk, before the chunk of that index.
    hostile: Option<(u8, Hostile)>,
    last: Last,
    trailers: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Te {
    Chunked,
    Padded,
    /// An empty list element, which RFC 9110 §5.6.1 lets a recipient skip.
    LeadingComma,
    GzipChunked,
    Twice,
    Repeated,
    Identity,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct ChunkStyle {
    upper: bool,
    zeros: u8,
    space: bool,
    extension: Option<Extension>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Extension {
    Name,
    Value,
    Quoted,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Hostile {
    Size(u8),
    /// The two bytes after the chunk's data are not CRLF.
    NoCrlfAfterData,
    /// The data runs on from the size: its meaning depends on the data.
    NoCrlfAfterSize,
    /// A size line longer than the parser waits for.
    LongLine,
}

/// Sizes a hostile gateway may send: too large for the response cap, for
/// a `u32`, for a `u64`, or not hex at all.
const HOSTILE_SIZES: [&str; 9] = [
    "ffffffffffffffff",
    "fffffffffffffffff",
    "7fffffff",
    "10001",
    "",
    "-1",
    "0x5",
    "zz",
    "00000000000000005",
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Last {
    Zero,
    Zeros,
    Extension,
    Missing,
}

/// Pieces past this many are not split off: the rest goes in one chunk.
const CHUNKS_MAX: usize = 32;

impl Chunked {
    /// Writes its headers into `head` and the chunks of `body` into
    /// `tail`; what the parsers must say, `None` when it depends on the
    /// bytes (a size line run into the data).
    pub fn write(&self, head: &mut Vec<String>, tail: &mut Vec<u8>, body: &[u8]) -> Option<Expect> {
        let name = self.case.apply("Transfer-Encoding");
        let (values, supported): (&[&str], bool) = match self.te {
            Te::Chunked => (&["chunked"], true),
            Te::Padded => (&["  Chunked "], true),
            Te::LeadingComma => (&[", chunked"], true),
            Te::GzipChunked => (&["gzip, chunked"], false),
            Te::Twice => (&["chunked", "chunked"], false),
            Te::Repeated => (&["chunked, chunked"], false),
            Te::Identity => (&["identity"], false),
        };
        for v in values {
            head.push(format!("{name}: {v}"));
        }
        if let Some(n) = self.length_too {
            head.push(format!("Content-Length: {n}"));
        }
        let mut pieces = Vec::new();
        let mut rest = body;
        for s in self.sizes.iter().take(CHUNKS_MAX) {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((usize::from(*s) % 700 + 1).min(rest.len()));
            pieces.push(piece);
            rest = after;
        }
        if !rest.is_empty() {
            pieces.push(rest);
        }
        let hostile = self
            .hostile
            .map(|(at, h)| (usize::from(at) % (pieces.len() + 1), h));
        for (i, piece) in pieces.iter().enumerate() {
            if let Some((at, h)) = hostile
                && at == i
            {
                write_hostile(h, tail);
            }
            let style = self.styles.get(i % self.styles.len().max(1)).copied();
            tail.extend_from_slice(size_line(piece.len(), style).as_bytes());
            tail.extend_from_slice(piece);
            tail.extend_from_slice(b"\r\n");
        }
        if let Some((at, h)) = hostile
            && at == pieces.len()
        {
            write_hostile(h, tail);
        }
        let last = match self.last {
            Last::Zero => "0\r\n",
            Last::Zeros => "000\r\n",
            Last::Extension => "0;final=1\r\n",
            Last::Missing => "",
        };
        tail.extend_from_slice(last.as_bytes());
        if !last.is_empty() {
            for t in self.trailers.iter().take(4) {
                tail.extend_from_slice(format!("X-Trailer-{t}: v\r\n").as_bytes());
            }
            tail.extend_from_slice(b"\r\n");
        }
        Some(match (supported, hostile, self.last) {
            (false, _, _) => Expect::refused(),
            (true, Some((_, Hostile::NoCrlfAfterSize)), _) => return None,
            (true, Some(_), _) => Expect::refused(),
            (true, None, Last::Missing) => Expect {
                body: None,
                complete: Some(false),
            },
            (true, None, _) => complete(body),
        })
    }
}

/// An honest chunk-size line for `len` bytes.
fn size_line(len: usize, style: Option<ChunkStyle>) -> String {
    let Some(s) = style else {
        return format!("{len:x}\r\n");
    };
    let hex = if s.upper {
        format!("{len:X}")
    } else {
        format!("{len:x}")
    };
    let zeros = "0".repeat(usize::from(s.zeros % 4));
    let space = if s.space { " " } else { "" };
    let ext = match s.extension {
        None => "",
        Some(Extension::Name) => ";name",
        Some(Extension::Value) => ";name=value",
        Some(Extension::Quoted) => ";name=\"a;b\"",
    };
    format!("{zeros}{hex}{space}{ext}\r\n")
}

fn write_hostile(h: Hostile, tail: &mut Vec<u8>) {
    let line = match h {
        Hostile::Size(k) => format!("{}\r\nabc\r\n", HOSTILE_SIZES[usize::from(k) % 9]),
        Hostile::NoCrlfAfterData => "3\r\nabcXY".into(),
        Hostile::NoCrlfAfterSize => "3abc\r\n".into(),
        Hostile::LongLine => format!("3;{}\r\nabc\r\n", "x".repeat(1100)),
    };
    tail.extend_from_slice(line.as_bytes());
}
