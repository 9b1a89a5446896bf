//! Values for policy keys, each with what the parser must do with it:
//! integers at and past their documented ranges and their types' ends,
//! names with unicode, control characters or great length, dates, IP
//! addresses and CIDRs, host:port forms, grant strings. A value the
//! parser must refuse records a marker its error message must contain.

use arbitrary::Arbitrary;

/// The refusals a built policy's values call for: the parser must make
/// one of them, and its message names it (it stops at the first).
#[derive(Debug, Default)]
pub struct Faults(pub Vec<String>);

impl Faults {
    /// A value the parser must refuse; its message contains `marker`.
    pub fn must(&mut self, marker: impl Into<String>) {
        self.0.push(marker.into());
    }
}

/// The largest `u32`, for fields of that type.
pub const U32_MAX: u64 = u32::MAX as u64;
/// The largest `u64`, and `usize` on the 64-bit hosts the fuzzer runs on.
pub const U64_MAX: u64 = u64::MAX;

/// An integer key: its TOML name, the name its range check reports, the
/// documented range and the largest value its Rust type holds.
pub struct Field<'a> {
    /// The TOML key (a type error quotes its line).
    pub key: &'a str,
    /// What the range check names.
    pub path: String,
    /// Smallest valid value.
    pub lo: u64,
    /// Largest valid value.
    pub hi: u64,
    /// Largest value of the Rust type.
    pub max: u64,
}

impl<'a> Field<'a> {
    /// A key without a range check beyond its type.
    pub fn any(key: &'a str, max: u64) -> Field<'a> {
        Field {
            key,
            path: key.into(),
            lo: 0,
            hi: max,
            max,
        }
    }
}

/// Which of `n` faults the byte `k` asks for: one time in sixteen, and
/// never when it is 0 (what `arbitrary` reads once the input runs out),
/// so a short input builds a valid policy rather than a refused one.
pub fn fault(k: u8, n: usize) -> Option<usize> {
    (k >= 240).then(|| usize::from(255 - k) % n)
}

/// An integer relative to its field's range: mostly at its ends or
/// between, at times past an end of the range or of the type.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Int {
    edge: u8,
    x: u32,
}

impl Int {
    /// The value for `f`, recording what the parser must do with it:
    /// outside the type, serde refuses it (the message quotes the line,
    /// so the key); outside the range, the range check names the path.
    pub fn pick(self, f: &Field, faults: &mut Faults) -> i64 {
        let (lo, hi, max) = (i128::from(f.lo), i128::from(f.hi), i128::from(f.max));
        let x = i128::from(self.x);
        // Faults at the ends of the range come first: a check off by one
        // shows there.
        let v: i128 = match fault(self.edge, 10) {
            Some(0..=2) => lo - 1,
            Some(3..=5) => hi + 1,
            Some(6) => 0,
            Some(7) => -1 - x % 1000,
            Some(8) => max + 1,
            Some(_) => i128::from(i64::MAX),
            None => match self.edge % 4 {
                0 => lo,
                1 => hi,
                _ => lo + x % (hi - lo + 1),
            },
        };
        // TOML has no integer past i64.
        let v = v.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        if v < 0 || v > max {
            faults.must(f.key);
        } else if v < lo || v > hi {
            faults.must(f.path.clone());
        }
        v as i64
    }
}

/// A MOD name: any string is a TOML key once quoted.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Name {
    Known(u8),
    Unicode,
    Control,
    Long,
    Empty,
    Dotted,
    Quote,
}

impl Name {
    /// The name.
    pub fn text(self) -> String {
        match self {
            Name::Known(i) => {
                ["direct", "pcp", "nat-pmp", "upnp-igd", "static"][usize::from(i) % 5].into()
            }
            Name::Unicode => "ünïcødé-模式-🛰".into(),
            Name::Control => "a\u{1}b\tc\nd\u{7f}".into(),
            Name::Long => "m".repeat(300),
            Name::Empty => String::new(),
            Name::Dotted => "a.b".into(),
            Name::Quote => "x\"y'z\\".into(),
        }
    }
}

/// Names no built MOD has, for orders that must be refused.
pub const GHOSTS: [&str; 3] = ["ghost", "PCP", "pcp "];

/// A string from a list of well-formed ones or, at times, of malformed
/// ones, which the parser must refuse naming `marker`.
pub fn pick<'a>(
    good: &[&'a str],
    bad: &[&'a str],
    k: u8,
    faults: &mut Faults,
    marker: &str,
) -> &'a str {
    match fault(k, bad.len()) {
        Some(i) => {
            faults.must(marker);
            bad[i]
        }
        None => good[usize::from(k) % good.len()],
    }
}

/// RFC 3339 times `humantime::parse_rfc3339` takes, and ones it refuses.
pub const DATES: [&str; 5] = [
    "2026-11-29T12:00:00Z",
    "2026-11-29T12:00:00.123Z",
    "2026-11-29T12:00:00+00:00",
    "2024-02-29T00:00:00Z",
    "9999-12-31T23:59:59Z",
];
/// See [`DATES`].
pub const BAD_DATES: [&str; 8] = [
    "2026-11-29 12:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2026-11-29T12:00:00+01:00",
    "tomorrow",
    "",
    "2026-11-29T12:00:00Zé",
];

/// Gateway addresses, and what is not one.
pub const IPS: [&str; 4] = ["10.0.0.1", "192.168.1.254", "fe80::1", "::ffff:10.0.0.1"];
/// See [`IPS`].
pub const BAD_IPS: [&str; 4] = ["10.0.0.256", "fe80::1%eth0", "10.0.0.1/24", ""];

/// Subnets with odd prefixes (host bits set, /0, a host route), and ones
/// with impossible prefixes.
pub const CIDRS: [&str; 6] = [
    "10.0.0.0/8",
    "10.0.0.1/8",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::1/128",
    "10.20.0.0/32",
];
/// See [`CIDRS`].
pub const BAD_CIDRS: [&str; 4] = ["10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/"];

/// `host:port` forms of `[services]` (a host, a port from 1), and not.
pub const HOST_PORTS: [&str; 3] = [
    "stun.example:3478",
    "198.51.100.1:3478",
    "[2001:db8::1]:3478",
];
/// See [`HOST_PORTS`].
pub const BAD_HOST_PORTS: [&str; 6] = [
    "stun.example",
    "stun.example:0",
    "stun.example:70000",
    "st un:3478",
    ":3478",
    "",
];

/// A port or port range as policies write them (`LO-HI` or `PORT`).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Ports {
    lo: u16,
    span: u16,
    shape: u8,
}

impl Ports {
    /// The text, and the range the port parser must read from it (`None`:
    /// it must refuse it: reversed, a range holding port 0, not numbers).
    pub fn text(self) -> (String, Option<(u16, u16)>) {
        let (lo, hi) = (self.lo, self.lo.saturating_add(self.span));
        let bad = ["", "1024-", "-5", "80-70000", "a-b", "1024 - 2048"];
        match (fault(self.shape, 2), self.shape % 16) {
            (Some(0), _) if lo < hi => (format!("{hi}-{lo}"), None),
            (Some(_), _) => (bad[usize::from(self.span) % bad.len()].into(), None),
            (None, 1) => ("0".into(), Some((0, 0))),
            (None, k) if k % 2 == 0 || lo == hi => (lo.to_string(), Some((lo, lo))),
            // A range may not hold port 0.
            (None, _) => (format!("{lo}-{hi}"), (lo != 0).then_some((lo, hi))),
        }
    }
}
