//! Ways to spoil an XML document that the parser must refuse: a DTD
//! (refused outright, so no entity expansion), an undefined entity, an
//! unclosed root.

use arbitrary::Arbitrary;

/// One document in eight is spoilt, one way or another.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Hostile(u8);

impl Hostile {
    /// 1: a DTD, 2: an undefined entity, 3: no closing root tag; 0 (also
    /// what runs-out input reads as): none.
    fn kind(self) -> u8 {
        match self.0 % 24 {
            k @ 1..=3 => k,
            _ => 0,
        }
    }

    /// Whether the document is spoilt.
    pub fn is_hostile(self) -> bool {
        self.kind() != 0
    }

    /// What goes after the XML declaration.
    pub fn prologue(self, x: &mut String) {
        if self.kind() == 1 {
            x.push_str("<!DOCTYPE root [<!ENTITY e \"x\">]>");
        }
    }

    /// What goes inside the root, last.
    pub fn inside(self, x: &mut String) {
        if self.kind() == 2 {
            x.push_str("<x>&undefined;</x>");
        }
    }

    /// Whether the root is closed.
    pub fn closes(self) -> bool {
        self.kind() != 3
    }
}
