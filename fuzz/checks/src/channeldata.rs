//! ChannelData framing, the only TURN bytes the broker parses natively
//! (`p2pbroker::relay::frame`): what a relay server, or anyone spoofing it
//! over UDP, sends. On any bytes: no panic; a channel frame's number is in
//! range and its data is exactly the bytes its length names, which the
//! header re-encodes; a STUN verdict needs a whole STUN header; a stream
//! frame is never shorter than what the datagram parse took.

use p2pbroker::relay::frame::{
    CHANNEL_MAX, CHANNEL_MIN, Frame, HEADER, header, parse, stream_frame_len,
};

/// One input.
pub fn run(data: &[u8]) {
    match parse(data) {
        Frame::Channel {
            number,
            data: payload,
        } => {
            assert!(
                (CHANNEL_MIN..=CHANNEL_MAX).contains(&number),
                "number {number:#x}"
            );
            assert_eq!(payload, &data[HEADER..HEADER + payload.len()]);
            let h = header(number, payload.len()).expect("a parsed length fits");
            assert_eq!(&h[..], &data[..HEADER], "the header re-encodes");
            let on_stream = stream_frame_len(data).expect("a whole header");
            assert!(on_stream >= HEADER + payload.len() && on_stream.is_multiple_of(4));
        }
        Frame::Stun => {
            assert!(data.len() >= 20 && data[0] >> 6 == 0, "a STUN header");
        }
        Frame::Invalid => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pseudo_random_inputs_pass() {
        crate::pseudo_random_inputs(2000, 96, super::run);
    }
}
