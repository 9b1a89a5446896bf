//! ChannelData framing (RFC 8656 section 12.4), the only part of TURN the
//! broker speaks natively: a 4-byte header (channel number, length) before
//! the application's bytes, padded to a multiple of 4 on a stream leg.
//! Everything else a server sends is a STUN message for the MOD.
//!
//! Pure functions over bytes: no socket, no allocation (the callers reuse
//! one buffer per direction), fuzzed by `fuzz/fuzz_targets/channeldata.rs`.

/// The lowest channel number (RFC 8656 section 12).
pub const CHANNEL_MIN: u16 = 0x4000;
/// The highest channel number.
pub const CHANNEL_MAX: u16 = 0x4FFF;
/// Bytes before the application data.
pub const HEADER: usize = 4;
/// A STUN message's fixed header (RFC 8489 section 5).
const STUN_HEADER: usize = 20;

/// What one datagram (or stream frame) from the server is.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Application data from the peer bound to `number`.
    Channel {
        /// The channel number.
        number: u16,
        /// The application's bytes.
        data: &'a [u8],
    },
    /// A STUN message (an answer or an indication): the MOD's.
    Stun,
    /// Neither, or cut short: dropped.
    Invalid,
}

/// Classify a datagram from the server. A ChannelData length beyond the
/// datagram is invalid; bytes after it (UDP padding) are ignored.
pub fn parse(datagram: &[u8]) -> Frame<'_> {
    let Some(&first) = datagram.first() else {
        return Frame::Invalid;
    };
    match first >> 6 {
        // The two top bits of a STUN message are zero.
        0b00 if datagram.len() >= STUN_HEADER => Frame::Stun,
        0b01 if datagram.len() >= HEADER => {
            let number = u16::from_be_bytes([datagram[0], datagram[1]]);
            let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
            match datagram.get(HEADER..HEADER + len) {
                Some(data) if number <= CHANNEL_MAX => Frame::Channel { number, data },
                _ => Frame::Invalid,
            }
        }
        _ => Frame::Invalid,
    }
}

/// Write the ChannelData header for `len` bytes of data on `number` into
/// `buf[..HEADER]` (the data follows it in place). `None` if `len` does not
/// fit the 16-bit length.
pub fn header(number: u16, len: usize) -> Option<[u8; HEADER]> {
    let len = u16::try_from(len).ok()?;
    let [n0, n1] = number.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    Some([n0, n1, l0, l1])
}

/// On a stream leg: how many bytes the frame at the front of `buf` takes
/// (ChannelData padded to 4, a STUN message by its length field), or
/// `None` while the header itself is incomplete. The caller reads until it
/// holds that many.
pub fn stream_frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    Some(match buf[0] >> 6 {
        0b01 => (HEADER + len).next_multiple_of(4),
        // STUN: the length counts the attributes after the 20-byte header.
        _ => STUN_HEADER + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_round_trips() {
        let mut buf = [0u8; 64];
        buf[..HEADER].copy_from_slice(&header(0x4001, 5).unwrap());
        buf[HEADER..HEADER + 5].copy_from_slice(b"hello");
        assert_eq!(
            parse(&buf[..HEADER + 5]),
            Frame::Channel {
                number: 0x4001,
                data: b"hello"
            }
        );
        // UDP may carry padding after the data: ignored.
        assert_eq!(
            parse(&buf[..HEADER + 8]),
            Frame::Channel {
                number: 0x4001,
                data: b"hello"
            }
        );
    }

    #[test]
    fn short_or_foreign_frames_are_refused() {
        assert_eq!(parse(&[]), Frame::Invalid);
        assert_eq!(parse(&[0x40, 0x00, 0x00]), Frame::Invalid);
        // Length past the datagram.
        assert_eq!(parse(&[0x40, 0x00, 0x00, 0x09, 1, 2]), Frame::Invalid);
        // 0x5000..0x7fff are reserved numbers, 0x80.. neither kind.
        assert_eq!(parse(&[0x50, 0x00, 0x00, 0x00]), Frame::Invalid);
        assert_eq!(parse(&[0x80; 24]), Frame::Invalid);
        // A STUN message is at least its header.
        assert_eq!(parse(&[0x01, 0x01, 0, 0]), Frame::Invalid);
        assert_eq!(parse(&[0x01; 20]), Frame::Stun);
        assert!(header(0x4000, 70_000).is_none());
    }

    #[test]
    fn stream_frames_are_sized_with_padding() {
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00]), None);
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00, 0x08]), Some(12));
        assert_eq!(stream_frame_len(&[0x01, 0x01, 0x00, 0x08]), Some(28));
    }
}
