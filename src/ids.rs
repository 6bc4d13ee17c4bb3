//! Checks for the identifiers that cross Vakt's edges: org numbers and record ids.
//!
//! The same checks guard the gRPC input and the data files, so any id the data can
//! hold is also an id a caller can ask about.

/// Longest id Vakt accepts, in bytes. Altinn ids are UUIDs; employee ids from an
/// end-user system are rarely longer than an e-mail address.
pub const MAX_ID_LEN: usize = 256;

/// Why an org number is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrgNumberError {
    #[error("is empty")]
    Empty,
    #[error("must be exactly 9 digits")]
    NotNineDigits,
    #[error("fails the mod-11 check digit")]
    CheckDigit,
}

/// Checks a Norwegian organisation number: 9 digits, the last a mod-11 check digit
/// over the first eight with weights 3,2,7,6,5,4,3,2. A remainder that would give
/// check digit 10 makes the number invalid.
///
/// ```
/// use vakt::ids::{check_org_number, OrgNumberError};
/// assert_eq!(check_org_number("991825827"), Ok(()));
/// assert_eq!(check_org_number("991825828"), Err(OrgNumberError::CheckDigit));
/// ```
pub fn check_org_number(s: &str) -> Result<(), OrgNumberError> {
    if s.is_empty() {
        return Err(OrgNumberError::Empty);
    }
    let b = s.as_bytes();
    if b.len() != 9 || !b.iter().all(u8::is_ascii_digit) {
        return Err(OrgNumberError::NotNineDigits);
    }
    const WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
    let sum: u32 = b[..8]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return Err(OrgNumberError::CheckDigit),
        c => c,
    };
    if u32::from(b[8] - b'0') == check {
        Ok(())
    } else {
        Err(OrgNumberError::CheckDigit)
    }
}

/// Why a record id is not valid.
/// Control characters, and the invisible formatting characters (bidi overrides,
/// zero-width characters, line separators) that make a logged id read differently
/// from what it is.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("contains a control or invisible formatting character")]
    ControlCharacter,
    #[error("has leading or trailing whitespace")]
    Whitespace,
}

/// Checks an employee, system user or team id. Quotes, `::`, backslashes and
/// non-ASCII letters are allowed: ids reach Cedar through `EntityId::new`, never
/// through policy text. Control characters are refused so that no id can forge a
/// line in a log.
pub fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if s.chars().any(is_invisible) {
        return Err(IdError::ControlCharacter);
    }
    if s.trim() != s {
        return Err(IdError::Whitespace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_org_numbers() {
        // Real Entity Register numbers (Digdir, Brønnøysundregistrene, Skatteetaten).
        for n in ["991825827", "974760673", "974761076"] {
            assert_eq!(check_org_number(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_bad_org_numbers() {
        assert_eq!(check_org_number(""), Err(OrgNumberError::Empty));
        assert_eq!(
            check_org_number("99182582"),
            Err(OrgNumberError::NotNineDigits)
        );
        assert_eq!(
            check_org_number("9918258270"),
            Err(OrgNumberError::NotNineDigits)
        );
        assert_eq!(
            check_org_number("99182582x"),
            Err(OrgNumberError::NotNineDigits)
        );
        assert_eq!(
            check_org_number("٩٩١٨٢٥٨٢٧"),
            Err(OrgNumberError::NotNineDigits)
        );
        assert_eq!(
            check_org_number("991825828"),
            Err(OrgNumberError::CheckDigit)
        );
    }

    #[test]
    fn remainder_one_is_never_valid() {
        // Every prefix whose weighted sum leaves remainder 1 would need check digit 10.
        let mut found = 0;
        for p in 0..100_000u32 {
            let prefix = format!("{p:08}");
            let sum: u32 = prefix
                .bytes()
                .zip([3, 2, 7, 6, 5, 4, 3, 2])
                .map(|(d, w)| u32::from(d - b'0') * w)
                .sum();
            if sum % 11 == 1 {
                for d in 0..=9 {
                    assert_eq!(
                        check_org_number(&format!("{prefix}{d}")),
                        Err(OrgNumberError::CheckDigit)
                    );
                }
                found += 1;
            }
        }
        assert!(found > 0);
    }

    #[test]
    fn ids() {
        assert_eq!(check_id("kari@firma.no"), Ok(()));
        assert_eq!(check_id("a\"b::c\\d æøå 🙂"), Ok(()));
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(check_id("a\nb"), Err(IdError::ControlCharacter));
        assert_eq!(check_id("\u{202e}irak"), Err(IdError::ControlCharacter));
        assert_eq!(check_id("ka\u{200b}ri"), Err(IdError::ControlCharacter));
        assert_eq!(check_id(" a"), Err(IdError::Whitespace));
        assert_eq!(check_id(&"x".repeat(10_000)), Err(IdError::TooLong));
    }
}
