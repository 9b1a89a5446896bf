//! Scripted SSDP responders, for a private namespace ([`super::netns`]):
//! each M-SEARCH to 239.255.255.250:1900 is answered by every scripted
//! answer, from its own source address, as IGDs (and impostors) would.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One scripted answer: who sends it and the LOCATION it announces.
pub struct SsdpAnswer {
    /// Source address (port 1900).
    pub from: IpAddr,
    /// The LOCATION header.
    pub location: String,
}

fn answer_bytes(location: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\
         USN: uuid:fake::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: fake UPnP/1.1\r\n\
         LOCATION: {location}\r\n\r\n"
    )
    .into_bytes()
}

/// Answer M-SEARCHes with `answers`, in order; returns how many
/// M-SEARCHes arrived. Stops after 32 datagrams or 10 s without one.
pub async fn fake_ssdp(answers: Vec<SsdpAnswer>) -> Arc<AtomicUsize> {
    let group = Ipv4Addr::new(239, 255, 255, 250);
    let listener = tokio::net::UdpSocket::bind((group, 1900)).await.unwrap();
    listener
        .join_multicast_v4(group, Ipv4Addr::LOCALHOST)
        .unwrap();
    let mut senders = Vec::new();
    for a in answers {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(a.from, 1900))
            .await
            .unwrap();
        senders.push((sock, answer_bytes(&a.location)));
    }
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..32 {
            let idle = Duration::from_secs(10);
            let Some((n, from)) = super::next_datagram(&listener, &mut buf, idle).await else {
                return;
            };
            if buf[..n].starts_with(b"M-SEARCH") {
                seen.fetch_add(1, Ordering::SeqCst);
                for (sock, bytes) in &senders {
                    let _ = sock.send_to(bytes, from).await;
                }
            }
        }
    });
    count
}
