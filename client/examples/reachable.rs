//! Make a local TCP port reachable through the broker, print the external
//! endpoint and every event, until Ctrl-C. Exiting closes the connection,
//! and the broker releases the lease.
//!
//! `cargo run -p p2pbroker-client --example reachable -- 6881`
//! (`P2PB_SOCKET=PATH` for a broker on another socket).

use p2pbroker_client::{Client, MapOptions, default_socket_path};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: reachable PORT")?
        .parse()
        .map_err(|e| format!("PORT: {e}"))?;
    let socket = default_socket_path()?;
    let client = Client::open(&socket)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let lease = client.map(MapOptions::tcp(port)).await?;
    println!(
        "tcp {} is reachable at {} (lease {}, via {})",
        lease.internal, lease.external, lease.id, lease.mode
    );
    let mut events = client.subscribe().await?;
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some(e) => println!(
                    "{} lease {}: {} {}",
                    e.kind,
                    e.lease.id,
                    e.lease.external,
                    e.reason.unwrap_or_default()
                ),
                None => {
                    eprintln!("the broker closed the connection");
                    break;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Dropping the client closes the connection: the broker releases the
    // lease and removes the mapping.
    drop(client);
    Ok(())
}
