//! Scopes: what a key may do.
use std::fmt;

/// `catalog:write` (back-office apps), `catalog:read` and `recognize` (checkouts, POS),
/// `admin` (operators). `admin` grants every other scope; the others grant only themselves,
/// so a read key cannot write and a write key cannot recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scope {
    #[value(name = "catalog:write")]
    CatalogWrite,
    #[value(name = "catalog:read")]
    CatalogRead,
    #[value(name = "recognize")]
    Recognize,
    #[value(name = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::CatalogWrite,
        Scope::CatalogRead,
        Scope::Recognize,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CatalogWrite => "catalog:write",
            Scope::CatalogRead => "catalog:read",
            Scope::Recognize => "recognize",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a key holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn from_strs<S: AsRef<str>>(items: &[S]) -> Self {
        let mut bits = 0u8;
        for s in items {
            if let Some(scope) = Scope::parse(s.as_ref()) {
                bits |= 1 << scope as u8;
            }
        }
        Self(bits)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u8) != 0
    }

    /// Whether a key with these scopes may use a route that needs `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        self.contains(needed) || self.contains(Scope::Admin)
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_grants_everything_others_only_themselves() {
        let admin = Scopes::from_strs(&["admin"]);
        let read = Scopes::from_strs(&["catalog:read", "bogus"]);
        for s in Scope::ALL {
            assert!(admin.grants(s));
        }
        assert!(read.grants(Scope::CatalogRead));
        assert!(!read.grants(Scope::CatalogWrite));
        assert!(!read.grants(Scope::Recognize));
        assert!(!Scopes::from_strs(&["catalog:write"]).grants(Scope::Recognize));
        assert_eq!(read.iter().collect::<Vec<_>>(), vec![Scope::CatalogRead]);
    }
}
