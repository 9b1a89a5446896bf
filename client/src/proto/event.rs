//! Events: `{"v":1,"event":"...","lease":{...},"reason":"..."}`, sent to
//! connections that subscribed, interleaved with their responses.

use serde::{Deserialize, Serialize};

use super::{Lease, PROTOCOL_VERSION};

/// An event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A lease was created.
    Mapped,
    /// A lease was renewed on its gateway.
    Renewed,
    /// A lease's mapping was lost (gateway reboot, address change, ...).
    Lost,
    /// A lost lease was mapped again (maybe via another MOD or port).
    ReEstablished,
    /// A lease ended (unmap, disconnect, expiry, shutdown).
    Released,
}

impl EventKind {
    /// The wire name (`"re-established"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Mapped => "mapped",
            EventKind::Renewed => "renewed",
            EventKind::Lost => "lost",
            EventKind::ReEstablished => "re-established",
            EventKind::Released => "released",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event sent to subscribed connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The lease as it now stands.
    pub lease: Lease,
    /// Why, when there is more to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The wire form: the event's fields after the version.
#[derive(Serialize)]
struct EventWire<'a> {
    v: u32,
    #[serde(flatten)]
    event: &'a Event,
}

/// Encode an event as one line, newline included.
pub fn encode_event(e: &Event) -> String {
    let mut s = serde_json::to_string(&EventWire {
        v: PROTOCOL_VERSION,
        event: e,
    })
    .expect("events serialise: every field is a plain value");
    s.push('\n');
    s
}
