use super::*;

const WAIT: Duration = Duration::from_secs(10);

async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn recv_from(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(WAIT, s.recv_from(&mut buf))
        .await
        .expect("a datagram in time")
        .unwrap();
    (buf[..n].to_vec(), from)
}

fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = frame::header(number, data.len()).unwrap().to_vec();
    v.extend_from_slice(data);
    v
}

/// A STUN-shaped message (the hub only looks at the top bits and length).
fn stun(tag: u8) -> Vec<u8> {
    let mut m = vec![0u8; 20];
    m[1] = 0x01;
    m[19] = tag;
    m
}

#[tokio::test]
async fn data_flows_both_ways_and_stun_waits_for_the_mod() {
    let hub = RelayHub::new(tokio::runtime::Handle::current());
    let (server, app) = (udp().await, udp().await);
    let id = hub.open(server.local_addr().unwrap()).unwrap();
    let c = hub.get(id).unwrap();
    let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let relayed: SocketAddr = "192.0.2.1:49152".parse().unwrap();
    hub.keep(
        id,
        app.local_addr().unwrap(),
        relayed,
        &[PeerChannel {
            peer,
            number: 0x4001,
        }],
    )
    .unwrap();

    // The MOD's message reaches the server; the server learns our address.
    c.send(&stun(1)).await.unwrap();
    let (got, broker) = recv_from(&server).await;
    assert_eq!(got, stun(1));

    // Server → application, through the peer's stand-in.
    server
        .send_to(&channel_data(0x4001, b"ping"), broker)
        .await
        .unwrap();
    let (got, standin) = recv_from(&app).await;
    assert_eq!(got, b"ping");
    let carrying = hub.carrying(id).unwrap();
    assert_eq!(carrying.peers, vec![(peer, standin)]);
    assert_eq!(carrying.relayed, Some(relayed));

    // Application → server as ChannelData on the peer's number.
    app.send_to(b"pong", standin).await.unwrap();
    let (got, _) = recv_from(&server).await;
    assert_eq!(got, channel_data(0x4001, b"pong"));

    // A STUN message waits for the MOD; an unknown channel is dropped.
    server
        .send_to(&channel_data(0x4002, b"lost"), broker)
        .await
        .unwrap();
    server.send_to(&stun(2), broker).await.unwrap();
    assert_eq!(c.receive(WAIT).await, Some(stun(2)));
    assert_eq!(c.receive(Duration::from_millis(1)).await, None);
    assert_eq!(c.counters.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(c.counters.to_app.load(Ordering::Relaxed), 1);
    assert_eq!(c.counters.to_relay.load(Ordering::Relaxed), 1);

    // Closing ends the data path and frees the stand-in.
    hub.close(id);
    assert!(hub.get(id).is_none());
    assert_eq!(hub.standins.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn only_the_applications_endpoint_reaches_the_relay() {
    let hub = RelayHub::new(tokio::runtime::Handle::current());
    let (server, app, stranger) = (udp().await, udp().await, udp().await);
    let id = hub.open(server.local_addr().unwrap()).unwrap();
    let peer = "192.0.2.7:5000".parse().unwrap();
    let relayed = "192.0.2.1:49152".parse().unwrap();
    let pc = [PeerChannel {
        peer,
        number: 0x4000,
    }];
    hub.keep(id, app.local_addr().unwrap(), relayed, &pc)
        .unwrap();
    let standin = hub.carrying(id).unwrap().peers[0].1;
    stranger.send_to(b"inject", standin).await.unwrap();
    app.send_to(b"real", standin).await.unwrap();
    let (got, _) = recv_from(&server).await;
    assert_eq!(
        got,
        channel_data(0x4000, b"real"),
        "the stranger's datagram never went out"
    );
    // Another endpoint cannot take the channel over.
    let e = hub
        .keep(id, stranger.local_addr().unwrap(), relayed, &pc)
        .unwrap_err();
    assert!(e.contains("another endpoint"), "{e}");
}

#[tokio::test]
async fn peers_are_checked_reconciled_and_capped() {
    let hub = RelayHub::new(tokio::runtime::Handle::current());
    let (server, app) = (udp().await, udp().await);
    let id = hub.open(server.local_addr().unwrap()).unwrap();
    let internal = app.local_addr().unwrap();
    let relayed = "192.0.2.1:49152".parse().unwrap();
    let pc = |i: u16| PeerChannel {
        peer: SocketAddr::new("192.0.2.9".parse().unwrap(), 1000 + i),
        number: 0x4000 + i,
    };
    let e = hub
        .keep(
            id,
            internal,
            relayed,
            &[PeerChannel {
                number: 0x3fff,
                ..pc(0)
            }],
        )
        .unwrap_err();
    assert!(e.contains("outside 0x4000-0x4fff"), "{e}");
    let e = hub
        .keep(id, internal, relayed, &[pc(1), pc(1)])
        .unwrap_err();
    assert!(e.contains("given twice"), "{e}");
    let many: Vec<PeerChannel> = (0..=PEERS_MAX as u16).map(pc).collect();
    assert!(hub.keep(id, internal, relayed, &many).is_err());

    hub.keep(id, internal, relayed, &[pc(1), pc(2)]).unwrap();
    assert_eq!(hub.standins.load(Ordering::Relaxed), 2);
    hub.keep(id, internal, relayed, &[pc(2)]).unwrap();
    assert_eq!(hub.standins.load(Ordering::Relaxed), 1);
    assert_eq!(hub.carrying(id).unwrap().peers.len(), 1);
    hub.close(id);
    hub.close(id);
    assert_eq!(hub.standins.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn channels_are_capped_and_the_queue_is_bounded() {
    let hub = RelayHub::new(tokio::runtime::Handle::current());
    let server = udp().await;
    let to = server.local_addr().unwrap();
    let ids: Vec<u32> = (0..CHANNELS_MAX).map(|_| hub.open(to).unwrap()).collect();
    let e = hub.open(to).unwrap_err();
    assert!(e.contains("relay channels already"), "{e}");
    let c = hub.get(ids[0]).unwrap();
    c.send(&stun(0)).await.unwrap();
    let (_, broker) = recv_from(&server).await;
    for i in 0..(QUEUE_MAX + 8) as u8 {
        server.send_to(&stun(i), broker).await.unwrap();
    }
    // The newest QUEUE_MAX are kept, oldest first.
    let deadline = tokio::time::Instant::now() + WAIT;
    while c.counters.dropped.load(Ordering::Relaxed) < 8 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.receive(WAIT).await, Some(stun(8)));
    // Bytes are capped too: large messages push the older ones out.
    while c.receive(Duration::from_millis(1)).await.is_some() {}
    let mut big = stun(0);
    big.resize(40 * 1024, 0);
    let before = c.counters.dropped.load(Ordering::Relaxed);
    for tag in [1u8, 2] {
        big[19] = tag;
        server.send_to(&big, broker).await.unwrap();
    }
    while c.counters.dropped.load(Ordering::Relaxed) == before
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kept = c.receive(WAIT).await.unwrap();
    assert_eq!(
        (kept.len(), kept[19]),
        (40 * 1024, 2),
        "the older one dropped"
    );
    for id in ids {
        hub.close(id);
    }
    assert!(hub.is_empty());
}

#[tokio::test]
async fn over_tcp_frames_are_cut_from_the_stream_and_padded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = RelayHub::new(tokio::runtime::Handle::current());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = udp().await;
    let opening = hub.open_stream(listener.local_addr().unwrap(), false);
    let (id, accepted) = tokio::join!(opening, listener.accept());
    let (id, (mut server, _)) = (id.unwrap(), accepted.unwrap());
    let peer = "192.0.2.7:5000".parse().unwrap();
    let relayed = "192.0.2.1:49152".parse().unwrap();
    let pc = [PeerChannel {
        peer,
        number: 0x4001,
    }];
    hub.keep(id, app.local_addr().unwrap(), relayed, &pc)
        .unwrap();
    let c = hub.get(id).unwrap();

    // One write holding a padded ChannelData frame and a STUN message, the
    // STUN message split across a second write.
    let mut bytes = channel_data(0x4001, b"ping");
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes[3] = 5; // length 5: "ping" and one more byte, then 3 of padding
    bytes.truncate(frame::HEADER + 8);
    let stun_msg = stun(3);
    bytes.extend_from_slice(&stun_msg[..10]);
    server.write_all(&bytes).await.unwrap();
    server.write_all(&stun_msg[10..]).await.unwrap();
    let (got, standin) = recv_from(&app).await;
    assert_eq!(got, b"ping\0");
    assert_eq!(c.receive(WAIT).await, Some(stun_msg));

    // Application → relay: padded to 4 on the stream.
    app.send_to(b"pong!", standin).await.unwrap();
    let mut framed = [0u8; 12];
    tokio::time::timeout(WAIT, server.read_exact(&mut framed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&framed[..9], &channel_data(0x4001, b"pong!")[..]);
    assert_eq!(&framed[9..], &[0, 0, 0]);

    // A frame that is neither kind ends the stream's reader.
    server.write_all(&[0x80; 8]).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while c.counters.dropped.load(Ordering::Relaxed) == 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.counters.dropped.load(Ordering::Relaxed), 1);
    hub.close(id);
}
