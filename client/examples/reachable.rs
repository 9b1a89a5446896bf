//! Make a local TCP port reachable through the broker, print the external
//! endpoint and every event, until Ctrl-C (which releases the lease).
//!
//! `cargo run -p p2pbroker-client --example reachable -- 6881`

use p2pbroker_client::{Client, MapOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: reachable PORT")?
        .parse()?;
    let client = Client::connect_default().await?;
    let lease = client.map(MapOptions::tcp(port)).await?;
    println!(
        "tcp {} is reachable at {} (lease {}, via {})",
        lease.internal, lease.external, lease.id, lease.mode
    );
    let mut events = client.subscribe().await?;
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some(e) => println!("{:?}: {} {}", e.kind, e.lease.external, e.reason.unwrap_or_default()),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Dropping the client closes the connection: the broker releases the lease.
    Ok(())
}
