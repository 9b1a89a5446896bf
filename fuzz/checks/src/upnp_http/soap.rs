//! SOAP replies built from a small model: an action's response with its
//! output arguments, or a fault carrying a UPnPError, under any namespace
//! prefix (or none), nested deep in other elements, the argument values
//! made of entities, character references, CDATA and odd numbers; some
//! documents made hostile (a DTD, an undefined entity, an unclosed tag).

use arbitrary::Arbitrary;
use p2pbroker_mode_upnp_igd::pinhole::parse_unique_id;
use p2pbroker_mode_upnp_igd::xml::{SoapReply, parse_soap};

use super::hostile::Hostile;
use super::text::Text;

/// A SOAP envelope.
#[derive(Arbitrary, Debug)]
pub struct Envelope {
    declaration: bool,
    ns: EnvelopeNs,
    /// Elements the envelope sits in: the parser finds Body anywhere.
    wrappers: u8,
    soap_header: bool,
    content: Content,
    hostile: Hostile,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum EnvelopeNs {
    S,
    Soap,
    SoapEnv,
    Default,
    None,
}

impl EnvelopeNs {
    fn prefix(self) -> &'static str {
        match self {
            EnvelopeNs::S => "s:",
            EnvelopeNs::Soap => "soap:",
            EnvelopeNs::SoapEnv => "SOAP-ENV:",
            EnvelopeNs::Default | EnvelopeNs::None => "",
        }
    }

    fn declaration(self) -> String {
        const NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
        match self {
            EnvelopeNs::Default => format!(" xmlns=\"{NS}\""),
            EnvelopeNs::None => String::new(),
            p => format!(" xmlns:{}=\"{NS}\"", p.prefix().trim_end_matches(':')),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Content {
    Success {
        action: Action,
        ns: ActionNs,
        args: Vec<Arg>,
    },
    Fault {
        code: ErrorCode,
        description: Option<Text>,
        /// A UPnPError xmlns, as the spec writes it.
        upnp_ns: bool,
        /// An action response beside the fault: the fault wins.
        beside: Option<Action>,
    },
}

/// Actions of WANIPConnection and WANIPv6FirewallControl, and made-up ones.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Action {
    AddPortMapping,
    AddAnyPortMapping,
    DeletePortMapping,
    GetExternalIPAddress,
    GetSpecificPortMappingEntry,
    AddPinhole,
    UpdatePinhole,
    DeletePinhole,
    Made(u8),
}

impl Action {
    fn name(self) -> String {
        match self {
            Action::Made(n) => format!("Act{n}"),
            a => format!("{a:?}"),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ActionNs {
    U,
    M,
    Default,
    None,
}

#[derive(Arbitrary, Debug)]
struct Arg {
    name: ArgName,
    /// With the action's prefix, when it has one.
    prefixed: bool,
    value: Text,
    /// A child after the text: the parser reads only the text before it.
    after: After,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ArgName {
    NewExternalIPAddress,
    UniqueID,
    NewLeaseDuration,
    NewPortMappingDescription,
    NewInternalClient,
    Made(u16),
}

impl ArgName {
    fn name(self) -> String {
        match self {
            // Dots, hyphens and non-ASCII letters are legal in names.
            ArgName::Made(n) => format!(
                "{}{n}",
                ["Arg", "new-port.", "_x", "NewÉtat"][usize::from(n % 4)]
            ),
            a => format!("{a:?}"),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum After {
    Nothing,
    Element,
    Comment,
}

#[derive(Arbitrary, Debug)]
enum ErrorCode {
    Valid { code: u16, zeros: u8, padded: bool },
    TooBig(u32),
    Negative(u16),
    Word,
    Empty,
    Missing,
}

impl ErrorCode {
    /// The errorCode element, and the code a parser must report.
    fn render(&self) -> (String, Option<u16>) {
        let text = match *self {
            ErrorCode::Valid {
                code,
                zeros,
                padded,
            } => {
                let pad = if padded { " \n" } else { "" };
                let zeros = "0".repeat(usize::from(zeros % 6));
                return (
                    format!("<errorCode>{pad}{zeros}{code}{pad}</errorCode>"),
                    Some(code),
                );
            }
            ErrorCode::TooBig(n) => (u64::from(n) + 65_536).to_string(),
            ErrorCode::Negative(n) => format!("-{}", n.max(1)),
            ErrorCode::Word => "ConflictInMappingEntry".into(),
            ErrorCode::Empty => String::new(),
            ErrorCode::Missing => return (String::new(), None),
        };
        (format!("<errorCode>{text}</errorCode>"), None)
    }
}

/// Arguments past this many are not built.
const ARGS_MAX: usize = 24;

impl Envelope {
    /// The document, with what `parse_soap` must answer checked by
    /// [`Envelope::check`].
    pub fn render(&self) -> String {
        let mut x = String::new();
        if self.declaration {
            x.push_str("<?xml version=\"1.0\"?>\r\n");
        }
        self.hostile.prologue(&mut x);
        let depth = usize::from(self.wrappers % 64);
        x.push_str(&"<w>".repeat(depth));
        let p = self.ns.prefix();
        let style = if p.is_empty() {
            String::new()
        } else {
            format!(" {p}encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"")
        };
        x.push_str(&format!("<{p}Envelope{}{style}>", self.ns.declaration()));
        if self.soap_header {
            x.push_str(&format!("<{p}Header><Session>7</Session></{p}Header>"));
        }
        x.push_str(&format!("<{p}Body>"));
        match &self.content {
            Content::Success { action, ns, args } => {
                x.push_str(&response(*action, *ns, args));
            }
            Content::Fault {
                code,
                description,
                upnp_ns,
                beside,
            } => {
                if let Some(a) = beside {
                    x.push_str(&response(*a, ActionNs::U, &[]));
                }
                let xmlns = if *upnp_ns {
                    " xmlns=\"urn:schemas-upnp-org:control-1-0\""
                } else {
                    ""
                };
                let desc = description.as_ref().map_or(String::new(), |d| {
                    format!("<errorDescription>{}</errorDescription>", d.render().0)
                });
                x.push_str(&format!(
                    "<{p}Fault><faultcode>{p}Client</faultcode><faultstring>UPnPError</faultstring>\
                     <detail><UPnPError{xmlns}>{}{desc}</UPnPError></detail></{p}Fault>",
                    code.render().0
                ));
            }
        }
        self.hostile.inside(&mut x);
        x.push_str(&format!("</{p}Body>"));
        if self.hostile.closes() {
            x.push_str(&format!("</{p}Envelope>"));
        }
        x.push_str(&"</w>".repeat(depth));
        x
    }

    /// `parse_soap` on the rendered `text` answers what was built.
    pub fn check(&self, text: &str) {
        if self.hostile.is_hostile() {
            let e = parse_soap(text, "AddPortMapping").unwrap_err();
            assert!(e.contains("malformed XML"), "{e}");
            return;
        }
        match &self.content {
            Content::Success { action, args, .. } => {
                let want: Vec<(String, String)> = args
                    .iter()
                    .take(ARGS_MAX)
                    .map(|a| (a.name.name(), a.value.render().1.trim().to_string()))
                    .collect();
                let name = action.name();
                assert_eq!(parse_soap(text, &name), Ok(SoapReply::Ok(want.clone())));
                // No built action is called `Other`.
                let e = parse_soap(text, "Other").unwrap_err();
                assert!(e.contains("no OtherResponse"), "{e}");
                // AddPinhole's UniqueID is the first one, a number that
                // fits 16 bits; a refusal quotes it. Read from every
                // reply's arguments, not only AddPinhole's, so repeated
                // UniqueIDs turn up often.
                let first = want.iter().find(|(k, _)| k == "UniqueID");
                let uid = parse_unique_id(&want);
                match first.map(|(_, v)| (v, v.parse::<u16>())) {
                    Some((_, Ok(n))) => assert_eq!(uid, Ok(n)),
                    Some((v, Err(_))) => assert!(uid.unwrap_err().contains(v.as_str())),
                    None => assert!(uid.is_err()),
                }
            }
            Content::Fault {
                code,
                description,
                beside,
                ..
            } => {
                let action = beside.map_or("AddPortMapping".into(), Action::name);
                let got = parse_soap(text, &action);
                match code.render().1 {
                    Some(code) => {
                        let text = description.as_ref().map_or(String::new(), |d| d.render().1);
                        let description = text.trim().chars().take(200).collect();
                        assert_eq!(got, Ok(SoapReply::Fault { code, description }));
                    }
                    None => {
                        let e = got.unwrap_err();
                        assert!(e.contains("without a numeric errorCode"), "{e}");
                    }
                }
            }
        }
    }
}

/// `<ActionResponse>` with its arguments.
fn response(action: Action, ns: ActionNs, args: &[Arg]) -> String {
    const SERVICE: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";
    let (p, decl) = match ns {
        ActionNs::U => ("u:", format!(" xmlns:u=\"{SERVICE}\"")),
        ActionNs::M => ("m:", format!(" xmlns:m=\"{SERVICE}\"")),
        ActionNs::Default => ("", format!(" xmlns=\"{SERVICE}\"")),
        ActionNs::None => ("", String::new()),
    };
    let name = action.name();
    let mut x = format!("<{p}{name}Response{decl}>");
    for a in args.iter().take(ARGS_MAX) {
        let ap = if a.prefixed { p } else { "" };
        let after = match a.after {
            After::Nothing => "",
            After::Element => "<nested><deeper>ignored</deeper></nested>",
            After::Comment => "<!-- ignored -->",
        };
        let n = a.name.name();
        x.push_str(&format!("<{ap}{n}>{}{after}</{ap}{n}>", a.value.render().0));
    }
    x.push_str(&format!("</{p}{name}Response>"));
    x
}
