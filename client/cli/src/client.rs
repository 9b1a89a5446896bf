//! `p2pb map|unmap|list|probe`: talk to a running broker.

use std::net::IpAddr;
use std::path::PathBuf;

use p2pbroker_client::{
    Client, ClientError, EventKind, Lease, MapOptions, Punch, Reached, Transport,
};

use crate::table::{Table, until};

/// Exit code: no broker answers on the socket.
pub const EXIT_NO_BROKER: u8 = 3;

/// `p2pb map` arguments.
#[derive(clap::Args)]
pub struct MapArgs {
    /// tcp or udp.
    transport: Transport,
    /// The local port to make reachable.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// End the lease after this long: seconds, or a duration such as
    /// `90m`, `2h`, `1day`.
    #[arg(long, value_parser = parse_lifetime)]
    lifetime: Option<u32>,
    /// Ask for this external port (a taken port is an error).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    external_port: Option<u16>,
    /// Use only this MOD (diagnosis, tests).
    #[arg(long)]
    mode: Option<String>,
    /// Leave a daemon-owned lease and exit (until `p2pb unmap` or expiry).
    #[arg(long)]
    detach: bool,
    /// Map this address instead of this host's (LAN-shared broker).
    #[arg(long)]
    address: Option<IpAddr>,
    /// End the lease when the application's socket on the port closes.
    #[arg(long)]
    until_closed: bool,
    /// The application can hole-punch: where no gateway maps the port and
    /// the NAT's mapping is endpoint-independent (or there is no NAT), say
    /// so (exit 0, no lease) instead of spending a relay.
    #[arg(long, conflicts_with = "mode")]
    punch: bool,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

/// `--json` alone.
#[derive(clap::Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `p2pb probe` arguments.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Use the broker's cached probe results instead of probing now.
    #[arg(long)]
    cached: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Which broker to talk to: the local socket, or a LAN-shared broker.
pub struct Target {
    /// The Unix socket, if given (else the default rule's).
    pub socket: Option<PathBuf>,
    /// `HOST:PORT` of a LAN-shared broker (token from `P2PB_TOKEN`).
    pub lan: Option<String>,
}

pub(super) async fn connect(to: &Target) -> Result<Client, u8> {
    let (what, r) = match &to.lan {
        Some(addr) => {
            let Ok(token) = std::env::var("P2PB_TOKEN") else {
                errln!("p2pb: --lan needs the LAN token in P2PB_TOKEN");
                return Err(crate::EXIT_USAGE);
            };
            (addr.clone(), Client::open_lan(addr.as_str(), &token).await)
        }
        None => {
            let socket = match &to.socket {
                Some(s) => s.clone(),
                None => p2pbroker_client::default_socket_path().map_err(|e| {
                    errln!("p2pb: {e}");
                    EXIT_NO_BROKER
                })?,
            };
            // Checks that the broker runs as root, this user or
            // P2PB_BROKER_UID before a byte is sent.
            let r = Client::open(&socket).await;
            (socket.display().to_string(), r)
        }
    };
    r.map_err(|e| match e {
        ClientError::Api(a) => {
            errln!("p2pb: {a}");
            crate::EXIT_FAILED
        }
        e @ ClientError::UntrustedBroker(_) => {
            errln!("p2pb: not talking to {what}: {e}");
            EXIT_NO_BROKER
        }
        e => {
            errln!(
                "p2pb: no broker at {what}: {e} (is `p2pb daemon` running? --socket / P2PB_SOCKET select another)"
            );
            EXIT_NO_BROKER
        }
    })
}

pub(super) fn failed(e: ClientError) -> u8 {
    match &e {
        ClientError::Api(a) => {
            errln!("p2pb: {a}");
            for r in &a.reasons {
                errln!("  {:<10} {:<12} {}", r.mode, r.kind, r.reason);
            }
        }
        other => errln!("p2pb: {other}"),
    }
    crate::EXIT_FAILED
}

/// A JSON line, with every character unsafe on a terminal escaped.
pub(super) fn json_line<T: serde::Serialize>(v: &T) {
    println!("{}", crate::text::json_line(v));
}

fn describe(l: &Lease) -> String {
    let relay = match &l.relay {
        Some(r) if !r.leg.is_empty() => format!(", relay {} over {}", r.server, r.leg),
        Some(r) => format!(", relay {}", r.server),
        None => String::new(),
    };
    format!(
        "{} {} is reachable at {} (lease {}, via {}{relay})",
        l.transport, l.internal, l.external, l.id, l.mode
    )
}

/// What `--punch` prints when no lease was needed.
fn punch_advice(p: &Punch) {
    let at = p
        .external_address
        .map_or("unknown".to_string(), |ip| ip.to_string());
    outln!(
        "no mapping needed: {} (external address {at}): punch from the application's own socket",
        p.nat.traversal
    );
    outln!("  NAT: {}", p.nat.detail);
    for r in &p.reasons {
        outln!("  {:<10} {:<12} {}", r.mode, r.kind, r.reason);
    }
}

/// `p2pb map`.
pub async fn map(a: MapArgs, to: &Target) -> u8 {
    let client = match connect(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut opts = match a.transport {
        Transport::Tcp => MapOptions::tcp(a.port),
        Transport::Udp => MapOptions::udp(a.port),
    }
    .persist(a.detach);
    if let Some(l) = a.lifetime {
        opts = opts.lifetime(l);
    }
    if let Some(p) = a.external_port {
        opts = opts.external_port(p);
    }
    if let Some(m) = &a.mode {
        opts = opts.mode(m);
    }
    if let Some(ip) = a.address {
        opts = opts.address(ip);
    }
    opts = opts.until_closed(a.until_closed);
    // Subscribe first so no event about the new lease is missed.
    let mut events = if a.detach {
        None
    } else {
        match client.subscribe().await {
            Ok(s) => Some(s),
            Err(e) => return failed(e),
        }
    };
    let answer = if a.punch {
        client.reach(opts).await
    } else {
        client.map(opts).await.map(Reached::Lease)
    };
    let lease = match answer {
        Ok(Reached::Lease(l)) => l,
        Ok(Reached::Punch(p)) => {
            if a.json {
                json_line(&Reached::Punch(p));
            } else {
                punch_advice(&p);
            }
            return 0;
        }
        Err(e) => return failed(e),
    };
    if a.json && a.punch {
        // One shape for every answer to `--punch`: {"lease":…} or {"punch":…}.
        json_line(&Reached::Lease(lease.clone()));
    } else if a.json {
        json_line(&lease);
    } else {
        outln!("{}", describe(&lease));
    }
    let Some(events) = events.as_mut() else {
        return 0;
    };
    if !a.json {
        outln!("holding the lease; Ctrl-C releases it");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let e = tokio::select! {
            e = events.next() => e,
            _ = tokio::signal::ctrl_c() => return 0,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => return 0,
        };
        let Some(e) = e else {
            errln!("p2pb: the broker closed the connection");
            return crate::EXIT_FAILED;
        };
        if e.lease.id != lease.id {
            continue;
        }
        if a.json {
            json_line(&e);
        } else {
            let why = e.reason.as_deref().unwrap_or("");
            outln!("{}: {} {why}", e.kind, e.lease.external);
        }
        if e.kind == EventKind::Released {
            return 0;
        }
    }
}

/// A lifetime: whole seconds (`3600`) or a humantime duration (`2h`),
/// 1 s to about 136 years.
pub fn parse_lifetime(s: &str) -> Result<u32, String> {
    let secs = if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().map_err(|e| e.to_string())?
    } else {
        let d =
            humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (e.g. 3600, 90m, 2h)"))?;
        if d.subsec_nanos() != 0 {
            return Err(format!("`{s}` is not a whole number of seconds"));
        }
        d.as_secs()
    };
    match u32::try_from(secs) {
        Ok(0) => Err("a lifetime is at least 1 second".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is longer than {} seconds", u32::MAX)),
    }
}

/// Which lease `p2pb unmap` means: an id, or `TRANSPORT PORT` as `upnpc
/// -d` takes it (the internal port, else the external one).
pub fn which_lease(args: &[String], leases: &[Lease]) -> Result<u64, String> {
    match args {
        [id] => id
            .parse()
            .map_err(|_| format!("`{id}` is not a lease id (or give TRANSPORT PORT)")),
        [t, port] => {
            let transport: p2pbroker_client::Transport =
                t.parse().map_err(|_| format!("`{t}` is not tcp or udp"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("`{port}` is not a port"))?;
            let of = |f: &dyn Fn(&Lease) -> u16| -> Vec<u64> {
                leases
                    .iter()
                    .filter(|l| l.transport == transport && f(l) == port)
                    .map(|l| l.id)
                    .collect()
            };
            let mut ids = of(&|l| l.internal.port());
            if ids.is_empty() {
                ids = of(&|l| l.external.port());
            }
            match ids[..] {
                [id] => Ok(id),
                [] => Err(format!("no lease of yours for {transport} port {port}")),
                _ => Err(format!(
                    "{} leases for {transport} port {port} (ids {}): give the id",
                    ids.len(),
                    ids.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        _ => Err("give a lease id, or TRANSPORT PORT".into()),
    }
}

/// `p2pb unmap`.
pub async fn unmap(args: &[String], json: bool, to: &Target) -> u8 {
    // Bad words are a usage error before any broker is asked: an empty
    // lease list leaves only the lookup to fail.
    if let Err(why) = which_lease(args, &[]).or_else(|e| match args {
        [_, _] if e.starts_with("no lease of yours") => Ok(0),
        _ => Err(e),
    }) {
        errln!("p2pb: {why}");
        return crate::EXIT_USAGE;
    }
    let client = match connect(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let id = match args {
        [_] => which_lease(args, &[]),
        _ => match client.list().await {
            Ok(leases) => which_lease(args, &leases),
            Err(e) => return failed(e),
        },
    };
    let id = match id {
        Ok(id) => id,
        Err(why) => {
            errln!("p2pb: {why}");
            return crate::EXIT_USAGE;
        }
    };
    match client.unmap(id).await {
        Ok(l) if json => {
            json_line(&l);
            0
        }
        Ok(l) => {
            outln!("released lease {} ({} {})", l.id, l.transport, l.external);
            0
        }
        Err(e) => failed(e),
    }
}

/// `p2pb permit`.
pub async fn permit(id: u64, peers: Vec<std::net::SocketAddr>, json: bool, to: &Target) -> u8 {
    let client = match connect(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.permit(id, peers).await {
        Ok(l) if json => {
            json_line(&l);
            0
        }
        Ok(l) => {
            outln!("lease {} relayed at {} admits:", l.id, l.external);
            for p in l.relay.iter().flat_map(|r| &r.peers) {
                outln!("  {} (reaches the application from {})", p.peer, p.local);
            }
            0
        }
        Err(e) => failed(e),
    }
}

pub(super) fn lease_table(leases: &[Lease]) -> Table {
    let mut t = Table::new(&[
        "LEASE", "PROTO", "INTERNAL", "EXTERNAL", "MOD", "STATE", "RENEW", "ENDS", "UID",
    ]);
    for l in leases {
        t.row(vec![
            l.id.to_string(),
            l.transport.to_string(),
            l.internal.to_string(),
            l.external.to_string(),
            l.mode.clone(),
            serde_json::to_value(l.state)
                .unwrap()
                .as_str()
                .unwrap_or("")
                .to_string(),
            l.renew_at.map_or("-".into(), until),
            match l.expires_at {
                Some(e) => until(e),
                None if l.persist => "on unmap".into(),
                None => "on disconnect".into(),
            },
            l.owner_uid.to_string(),
        ]);
    }
    t
}

/// `p2pb list`.
pub async fn list(json: bool, to: &Target) -> u8 {
    let client = match connect(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.list().await {
        Ok(leases) if json => {
            json_line(&leases);
            0
        }
        Ok(leases) if leases.is_empty() => {
            outln!("no leases");
            0
        }
        Ok(leases) => {
            print!("{}", lease_table(&leases));
            0
        }
        Err(e) => failed(e),
    }
}

/// The NAT behaviour in one line: RFC 4787's terms and what they mean.
fn nat_line(n: &p2pbroker_client::NatView) -> String {
    if !n.ok {
        return format!("unknown ({}: {})", n.mode, n.detail);
    }
    let word = |w: &Option<String>| w.clone().unwrap_or_else(|| "undetermined".into());
    let hairpin = match n.hairpinning {
        Some(true) => "yes",
        Some(false) => "no",
        None => "untested",
    };
    let reflexive = n.reflexive.map_or("-".into(), |r| r.to_string());
    let meaning = match n.traversal.as_str() {
        "direct" => "no NAT",
        "hole-punching" => "hole punching works",
        "relay" => "symmetric: only a relay gets through",
        _ => "traversal unknown",
    };
    format!(
        "mapping {}, filtering {}, hairpinning {hairpin}; {meaning} (reflexive {reflexive}, by {})",
        word(&n.mapping),
        word(&n.filtering),
        n.mode
    )
}

/// `p2pb probe`.
pub async fn probe(a: ProbeArgs, to: &Target) -> u8 {
    let client = match connect(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let p = match client.probe(!a.cached).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    if a.json {
        json_line(&p);
        return 0;
    }
    outln!("gateways:          {}", crate::text::ip_list(&p.gateways));
    let class = p
        .probes
        .iter()
        .find(|x| x.external_address == p.external_address)
        .and_then(|x| x.external_class.clone());
    match p.external_address {
        Some(a) => outln!("external address:  {a} ({})", class.unwrap_or_default()),
        None => outln!("external address:  unknown"),
    }
    let double = match (&p.double_nat_why, p.double_nat) {
        (Some(why), _) => format!("yes: {why}"),
        (None, true) => "yes: the gateway's external address is not public".into(),
        (None, false) => "no".into(),
    };
    outln!("double NAT / CGNAT: {double}");
    if let Some(n) = &p.nat {
        outln!("NAT behaviour:     {}", nat_line(n));
    }
    outln!();
    let mut t = Table::new(&["MOD", "RESULT", "TIME", "GATEWAY", "WHAT IT SAW"]);
    for x in &p.probes {
        t.row(vec![
            x.mode.clone(),
            if x.ok {
                "ok".into()
            } else {
                x.kind.clone().unwrap_or_default()
            },
            format!("{} ms", x.elapsed_ms),
            x.gateway.map_or("-".into(), |g| g.to_string()),
            x.detail.clone(),
        ]);
    }
    print!("{t}");
    outln!();
    match &p.chosen {
        Some(m) => outln!("would map with: {m}"),
        None => outln!("would map with: nothing"),
    }
    outln!("why: {}", p.why);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_seconds_or_durations() {
        assert_eq!(parse_lifetime("3600"), Ok(3600));
        assert_eq!(parse_lifetime("2h"), Ok(7200));
        assert_eq!(parse_lifetime("1day 30m"), Ok(88_200));
        assert!(parse_lifetime("0").unwrap_err().contains("at least 1"));
        assert!(parse_lifetime("1500ms").unwrap_err().contains("whole"));
        assert!(parse_lifetime("200years").unwrap_err().contains("longer"));
        assert!(parse_lifetime("soon").unwrap_err().contains("e.g."));
    }

    fn lease(id: u64, transport: &str, internal: u16, external: u16) -> Lease {
        serde_json::from_value(serde_json::json!({
            "id": id, "transport": transport,
            "internal": format!("10.0.0.2:{internal}"),
            "external": format!("198.51.100.2:{external}"),
            "mode": "pcp", "state": "active", "gateway_lifetime": 3600,
            "renew_at": null, "expires_at": null, "owner_uid": 0,
            "persist": true, "created_at": 0,
        }))
        .unwrap()
    }

    #[test]
    fn unmap_finds_a_lease_by_id_or_by_transport_and_port() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let leases = [
            lease(1, "tcp", 6881, 40001),
            lease(2, "udp", 6881, 6881),
            lease(3, "tcp", 7000, 7000),
            lease(4, "tcp", 7000, 7001),
        ];
        assert_eq!(which_lease(&s(&["7"]), &[]), Ok(7));
        assert_eq!(which_lease(&s(&["tcp", "6881"]), &leases), Ok(1));
        assert_eq!(which_lease(&s(&["udp", "6881"]), &leases), Ok(2));
        // The external port when no internal one matches.
        assert_eq!(which_lease(&s(&["tcp", "40001"]), &leases), Ok(1));
        let e = which_lease(&s(&["tcp", "7000"]), &leases).unwrap_err();
        assert!(e.contains("ids 3, 4"), "{e}");
        assert!(
            which_lease(&s(&["tcp", "1"]), &leases)
                .unwrap_err()
                .contains("no lease")
        );
        assert!(which_lease(&s(&["sctp", "1"]), &leases).is_err());
        assert!(which_lease(&s(&["x"]), &leases).is_err());
    }
}
