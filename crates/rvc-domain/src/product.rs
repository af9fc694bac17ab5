use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Stock keeping unit: 1-64 of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Sku(String);

impl TryFrom<String> for Sku {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, DomainError> {
        Self::parse(&raw)
    }
}

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(DomainError::invalid("sku", "must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(DomainError::invalid(
                "sku",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(DomainError::invalid(
                "sku",
                format!("character {bad:?} is not allowed; use A-Z, a-z, 0-9, '.', '_' or '-'"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, DomainError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    let n = s.chars().count();
    if n > max_chars {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max_chars} characters (got {n})"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// Product display name: 1-128 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct ProductName(String);

impl TryFrom<String> for ProductName {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, DomainError> {
        Self::parse(&raw)
    }
}

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        parse_text("name", raw, 128).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Category name: 1-128 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct CategoryName(String);

impl TryFrom<String> for CategoryName {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, DomainError> {
        Self::parse(&raw)
    }
}

impl CategoryName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        parse_text("category_name", raw, 128).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ISO 4217 alphabetic currency code (three upper-case letters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency(String);

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, DomainError> {
        Self::parse(&raw)
    }
}

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim().to_ascii_uppercase();
        if s.len() != 3 || !s.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(DomainError::invalid(
                "currency",
                "must be an ISO 4217 code of three letters, such as EUR",
            ));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A positive price in minor units (cents). Parsed from a decimal string, never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64")]
pub struct Price(i64);

impl TryFrom<i64> for Price {
    type Error = DomainError;
    fn try_from(minor: i64) -> Result<Self, DomainError> {
        Self::from_minor(minor)
    }
}

impl Price {
    /// Parses `"129.90"`, `"5"`, `"0.5"`: greater than zero, at most two fraction digits.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        let err = |why: &str| DomainError::invalid("price", why.to_owned());
        if s.is_empty() {
            return Err(err("must not be empty"));
        }
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "must be a decimal number such as 129.90 (digits, optional '.' and up to 2 fraction digits)",
            ));
        }
        if s.contains('.') && frac.is_empty() {
            return Err(err("needs digits after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("must be a decimal number such as 129.90"));
        }
        if frac.len() > 2 {
            return Err(err("has more than 2 fraction digits"));
        }
        let whole: i64 = int.parse().map_err(|_| err("is too large"))?;
        let mut cents: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            let digit = i64::from(b - b'0');
            cents += if i == 0 { digit * 10 } else { digit };
        }
        let minor = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(cents))
            .ok_or_else(|| err("is too large"))?;
        if minor <= 0 {
            return Err(err("must be greater than zero"));
        }
        Ok(Self(minor))
    }

    pub fn from_minor(minor: i64) -> Result<Self, DomainError> {
        if minor <= 0 {
            return Err(DomainError::invalid("price", "must be greater than zero"));
        }
        Ok(Self(minor))
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_allowed_alphabet_and_rejects_the_rest() {
        assert_eq!(Sku::parse(" AB-12_x.9 ").unwrap().as_str(), "AB-12_x.9");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse("ä").is_err());
        assert!(Sku::parse(&"a".repeat(64)).is_ok());
        assert!(Sku::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(ProductName::parse("  Milk  ").unwrap().as_str(), "Milk");
        assert!(ProductName::parse("   ").is_err());
        assert!(ProductName::parse(&"é".repeat(128)).is_ok());
        assert!(ProductName::parse(&"é".repeat(129)).is_err());
        assert!(CategoryName::parse("Dairy\u{0}").is_err());
    }

    #[test]
    fn price_parses_decimal_strings_into_minor_units() {
        assert_eq!(Price::parse("129.90").unwrap().minor_units(), 12990);
        assert_eq!(Price::parse("129.9").unwrap().minor_units(), 12990);
        assert_eq!(Price::parse("5").unwrap().minor_units(), 500);
        assert_eq!(Price::parse("0.01").unwrap().minor_units(), 1);
        assert_eq!(Price::parse("0.05").unwrap().to_string(), "0.05");
        for bad in [
            "",
            "0",
            "0.00",
            "-1",
            "1.234",
            "1.",
            ".5",
            "1e3",
            "abc",
            "1,50",
            "+1",
            "99999999999999999999",
        ] {
            assert!(Price::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn newtypes_deserialize_through_their_parse() {
        assert_eq!(
            serde_json::from_str::<Sku>("\" AB-1 \"").unwrap().as_str(),
            "AB-1"
        );
        assert!(serde_json::from_str::<Sku>("\"a b\"").is_err());
        assert!(serde_json::from_str::<ProductName>("\"  \"").is_err());
        assert!(serde_json::from_str::<CategoryName>("\"x\\u0000\"").is_err());
        assert_eq!(
            serde_json::from_str::<Currency>("\"eur\"")
                .unwrap()
                .as_str(),
            "EUR"
        );
        assert_eq!(
            serde_json::from_str::<Price>("129").unwrap().minor_units(),
            129
        );
        assert!(serde_json::from_str::<Price>("0").is_err());
        // Serialised as the bare value, as before.
        assert_eq!(
            serde_json::to_string(&Sku::parse("A").unwrap()).unwrap(),
            "\"A\""
        );
        assert_eq!(
            serde_json::to_string(&Price::from_minor(5).unwrap()).unwrap(),
            "5"
        );
    }

    #[test]
    fn currency_is_three_letters() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "EUR");
        assert!(Currency::parse("EU").is_err());
        assert!(Currency::parse("E1R").is_err());
    }
}
