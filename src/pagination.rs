//! Cursor pagination (AIP-158): `page_size` and an opaque `page_token`.
//!
//! Lists are ordered by id, and ids are UUIDv7 (time-ordered), so "after this
//! id" is a stable keyset cursor: no duplicates or gaps while rows are added.
//! The token also carries a fingerprint of the filters, so a token cannot be
//! replayed against a different query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::FieldViolation;

/// Page size when the request asks for 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Larger requested page sizes are lowered to this.
pub const MAX_PAGE_SIZE: u64 = 500;

/// A page of results and the token for the next one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// A list request as an operation takes it: the parsed filter, and which
/// page (checked against the filter by [`PageRequest::parse`]).
#[derive(Clone, Debug)]
pub struct PageQuery<F> {
    pub filter: F,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u64,
    pub after: Option<Uuid>,
    fingerprint: String,
}

impl PageRequest {
    /// `filters` is any text that identifies the query's filters.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let size = match page_size {
            size if size < 0 => {
                violations.push(FieldViolation::new("page_size", "must not be negative"));
                0
            }
            0 => DEFAULT_PAGE_SIZE,
            size => (size as u64).min(MAX_PAGE_SIZE),
        };
        let fingerprint = hex::encode(&Sha256::digest(filters.as_bytes())[..8]);
        let mut after = None;
        if !page_token.is_empty() {
            match decode(page_token) {
                Some((id, token_fingerprint)) if token_fingerprint == fingerprint => {
                    after = Some(id)
                }
                Some(_) => violations.push(FieldViolation::new(
                    "page_token",
                    "was issued for a request with different filters",
                )),
                None => violations.push(FieldViolation::new(
                    "page_token",
                    "is not a valid page token",
                )),
            }
        }
        if violations.is_empty() {
            Ok(Self {
                size,
                after,
                fingerprint,
            })
        } else {
            Err(violations)
        }
    }

    /// How many rows to fetch: one more than the page, to learn whether a
    /// next page exists.
    pub fn fetch_limit(&self) -> u64 {
        self.size + 1
    }

    /// Trims the extra row fetched by [`Self::fetch_limit`] and returns the
    /// token for the next page (empty on the last one).
    pub fn finish<T>(&self, rows: &mut Vec<T>, id_of: impl Fn(&T) -> Uuid) -> String {
        if rows.len() as u64 <= self.size {
            return String::new();
        }
        rows.truncate(self.size as usize);
        rows.last()
            .map(|last| encode(id_of(last), &self.fingerprint))
            .unwrap_or_default()
    }
}

fn encode(after: Uuid, fingerprint: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{after}|{fingerprint}"))
}

fn decode(token: &str) -> Option<(Uuid, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, fingerprint) = text.split_once('|')?;
    Some((Uuid::parse_str(id).ok()?, fingerprint.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_reject_negatives() {
        assert_eq!(
            PageRequest::parse(0, "", "").unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(10_000, "", "").unwrap().size,
            MAX_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(-1, "", "").unwrap_err()[0].field,
            "page_size"
        );
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filters() {
        let page = PageRequest::parse(2, "", "type=student").unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        let token = page.finish(&mut rows, |id| *id);
        assert_eq!(rows.len(), 2);
        let next = PageRequest::parse(2, &token, "type=student").unwrap();
        assert_eq!(next.after, Some(ids[1]));
        assert!(PageRequest::parse(2, &token, "type=teacher").is_err());
        assert!(PageRequest::parse(2, "garbage", "type=student").is_err());
    }
}
