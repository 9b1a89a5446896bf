//! Element text for the XML builders: plain characters, the five named
//! entities, character references, CDATA sections, odd numbers and
//! whitespace, written as XML and decoded as a parser must read them back.

use arbitrary::Arbitrary;

/// Pieces of one element's text.
#[derive(Arbitrary, Debug)]
pub struct Text(Vec<Piece>);

#[derive(Arbitrary, Debug)]
enum Piece {
    Plain(String),
    Named(Named),
    Decimal(char),
    Hex(char),
    Cdata(String),
    Number(Number),
    Space(Space),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Named {
    Amp,
    Lt,
    Gt,
    Quot,
    Apos,
}

/// Numbers a gateway may send where a port, lease or UniqueID belongs.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Number {
    Small(u16),
    Big(u64),
    /// 2^128: more than any integer type here holds.
    Huge,
    Negative(u16),
    LeadingZeros(u8, u16),
    HexLike(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Space {
    Blank,
    Tab,
    Newline,
    Many,
}

/// Pieces and characters past these are dropped: longer text reaches no
/// other code.
const PIECES_MAX: usize = 12;
const CHARS_MAX: usize = 40;

/// Whether XML 1.0 allows `c` in a document (§2.2), leaving out CR, which
/// a parser turns into LF.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn allowed(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().filter(|c| xml_char(*c)).take(CHARS_MAX)
}

impl Text {
    /// The text as XML, and what a parser must read from it.
    pub fn render(&self) -> (String, String) {
        let mut xml = String::new();
        let mut text = String::new();
        for p in self.0.iter().take(PIECES_MAX) {
            match p {
                Piece::Plain(s) => {
                    for c in allowed(s) {
                        match c {
                            '&' => xml.push_str("&amp;"),
                            '<' => xml.push_str("&lt;"),
                            // `]]>` may not appear in text (XML 1.0 §2.4).
                            '>' => xml.push_str("&gt;"),
                            c => xml.push(c),
                        }
                        text.push(c);
                    }
                }
                Piece::Named(n) => {
                    let (entity, c) = match n {
                        Named::Amp => ("&amp;", '&'),
                        Named::Lt => ("&lt;", '<'),
                        Named::Gt => ("&gt;", '>'),
                        Named::Quot => ("&quot;", '"'),
                        Named::Apos => ("&apos;", '\''),
                    };
                    xml.push_str(entity);
                    text.push(c);
                }
                Piece::Decimal(c) | Piece::Hex(c) if xml_char(*c) => {
                    match p {
                        Piece::Decimal(_) => xml.push_str(&format!("&#{};", u32::from(*c))),
                        _ => xml.push_str(&format!("&#x{:X};", u32::from(*c))),
                    }
                    text.push(*c);
                }
                Piece::Decimal(_) | Piece::Hex(_) => {}
                Piece::Cdata(s) => {
                    // Without `>` the section cannot end early.
                    let inner: String = allowed(s).filter(|c| *c != '>').collect();
                    xml.push_str(&format!("<![CDATA[{inner}]]>"));
                    text.push_str(&inner);
                }
                Piece::Number(n) => {
                    let s = match *n {
                        Number::Small(v) => v.to_string(),
                        Number::Big(v) => v.to_string(),
                        Number::Huge => "340282366920938463463374607431768211456".into(),
                        Number::Negative(v) => format!("-{v}"),
                        Number::LeadingZeros(z, v) => {
                            format!("{}{v}", "0".repeat(usize::from(z % 8)))
                        }
                        Number::HexLike(v) => format!("0x{v:x}"),
                    };
                    xml.push_str(&s);
                    text.push_str(&s);
                }
                Piece::Space(s) => {
                    let s = match s {
                        Space::Blank => " ",
                        Space::Tab => "\t",
                        Space::Newline => "\n",
                        Space::Many => " \t\n  ",
                    };
                    xml.push_str(s);
                    text.push_str(s);
                }
            }
        }
        (xml, text)
    }
}
