//! `p2pb connect HOST:PORT`: ask the broker for an outbound connection (by
//! the route its policy picks for the destination) and pipe stdin to it
//! and it to stdout, like `nc`. What happened goes to stderr.

use std::io::{Read, Write};
use std::net::Shutdown;

use p2pbroker_client::{ConnectParams, Outbound};

use crate::client::{Target, connect as open_broker, failed};

/// `p2pb connect` arguments.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// The destination, `HOST:PORT` or `[IPv6]:PORT`.
    to: String,
    /// Use only this route (`direct` or a connector MOD the policy allows).
    #[arg(long)]
    via: Option<String>,
    /// Say nothing on stderr about the route.
    #[arg(long, short)]
    quiet: bool,
    /// Half-close the connection when stdin ends (as `nc -N`). Off by
    /// default: many proxies (tinyproxy among them) end the whole tunnel on
    /// a half-close, before the answer comes back.
    #[arg(long)]
    half_close: bool,
}

/// `HOST:PORT` or `[IPv6]:PORT` as a host and a port (`p2pb connect`, and
/// `p2pb mode run … handshake --to`). An error quotes `text` as given: its
/// printers (`errln!`) escape the whole line.
pub fn destination(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{text}`: the port must be 1-65535"))?;
    if host.is_empty() || host.len() > 255 {
        return Err(format!("`{text}`: the host must be 1-255 bytes"));
    }
    Ok((host.to_string(), port))
}

/// Run it; the exit code.
pub async fn run(a: ConnectArgs, to: &Target) -> u8 {
    let (host, port) = match destination(&a.to) {
        Ok(d) => d,
        Err(e) => {
            errln!("p2pb: {e}");
            return crate::EXIT_USAGE;
        }
    };
    let client = match open_broker(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut p = ConnectParams::new(host, port);
    p.via = a.via;
    let out = match client.connect_with(p).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    // The broker has handed the socket over and holds nothing for it.
    drop(client);
    if !a.quiet {
        errln!("p2pb: {}", describe(&out));
    }
    let half_close = a.half_close;
    match tokio::task::spawn_blocking(move || pipe(out.stream, half_close)).await {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            errln!("p2pb: the connection failed: {e}");
            crate::EXIT_FAILED
        }
        Err(_) => crate::EXIT_FAILED,
    }
}

/// How the connection was opened, as text from the broker: `errln!`
/// escapes it (once) on its way to the terminal.
fn describe(o: &Outbound) -> String {
    let c = &o.connection;
    let through = c
        .proxy
        .as_ref()
        .map(|p| format!(" through {p}"))
        .unwrap_or_default();
    let mut s = format!(
        "connected to {}:{} via {}{through} in {} ms",
        c.host, c.port, c.via, c.elapsed_ms
    );
    for r in &c.skipped {
        s.push_str(&format!("; {} failed first: {}", r.mode, r.reason));
    }
    s
}

/// stdin to the stream (then, with `half_close`, a FIN), the stream to
/// stdout, until the far end closes.
fn pipe(stream: std::net::TcpStream, half_close: bool) -> std::io::Result<()> {
    let mut up = stream.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        if half_close {
            let _ = up.shutdown(Shutdown::Write);
        }
    });
    let mut down = stream;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = down.read(&mut buf)?;
        if n == 0 {
            return out.flush();
        }
        // Flushed at once: an interactive peer's bytes must not wait.
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

#[cfg(test)]
mod destination_tests {
    use super::destination;

    #[test]
    fn destinations_parse_and_refuse_clearly() {
        assert_eq!(
            destination("198.51.100.1:7000").unwrap(),
            ("198.51.100.1".to_string(), 7000)
        );
        assert_eq!(destination("[2001:db8::1]:443").unwrap().0, "2001:db8::1");
        assert_eq!(destination("peer.example:80").unwrap().0, "peer.example");
        for bad in ["nohost", "host:0", "host:99999", ":80"] {
            assert!(destination(bad).is_err(), "{bad}");
        }
        // Quoted as given: the line's printer escapes it, once.
        let e = destination("a\u{1b}[31m:0").unwrap_err();
        assert!(e.contains("a\u{1b}[31m"), "{e}");
        let line = crate::text::escape(&format!("p2pb: {e}")).into_owned();
        assert!(line.contains("a\\u{1b}[31m"), "{line}");
        assert!(!line.contains("\\\\"), "escaped once: {line}");
    }
}
