//! Page sizes and page tokens for `ListWorkers`.
//!
//! A token carries the last worker id of the previous page and a fingerprint
//! of the filter it was issued for, both in hexadecimal. The next page starts
//! after that id, so a worker joining between pages is never listed twice,
//! and a token reused with another filter is rejected rather than misread.

use crate::error::Error;
use crate::worker::{GpuFilter, WorkerFilter};

/// Page size used when the request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: usize = 1_000;
/// Largest page size; larger requests are capped to it.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Hex digits of the filter fingerprint at the start of a token.
const FINGERPRINT_DIGITS: usize = 16;

/// Returns the page size to use for a requested one.
pub fn effective_page_size(requested: u32) -> usize {
    match usize::try_from(requested) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(size) => size.min(MAX_PAGE_SIZE),
        Err(_) => MAX_PAGE_SIZE,
    }
}

/// Returns the token that resumes listing after `last_id` with `filter`.
pub fn encode_token(filter: &WorkerFilter, last_id: &str) -> String {
    let mut token = format!("{:016x}", fingerprint(filter));
    for byte in last_id.as_bytes() {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

/// Returns the worker id a token resumes after; an empty token starts at
/// the beginning.
///
/// # Errors
///
/// `Error::InvalidArgument` for field `page_token` when the token is
/// malformed or was issued for another filter.
pub fn decode_token(filter: &WorkerFilter, token: &str) -> Result<Option<String>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || {
        Error::invalid(
            "page_token",
            token,
            "is not a token returned by ListWorkers; start again with an empty token",
        )
    };
    if token.len() <= FINGERPRINT_DIGITS || !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(malformed());
    }
    let (fingerprint_hex, id_hex) = token.split_at(FINGERPRINT_DIGITS);
    let issued_for = u64::from_str_radix(fingerprint_hex, 16).map_err(|_| malformed())?;
    if issued_for != fingerprint(filter) {
        return Err(Error::invalid(
            "page_token",
            token,
            "was issued for a different filter; keep the filter unchanged while paging",
        ));
    }
    let bytes = (0..id_hex.len())
        .step_by(2)
        .map(|start| u8::from_str_radix(&id_hex[start..start + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| malformed())?;
    String::from_utf8(bytes).map(Some).map_err(|_| malformed())
}

/// Returns a 64-bit FNV-1a hash of the filter fields: stable across
/// processes, unlike the standard library's randomly keyed hasher.
fn fingerprint(filter: &WorkerFilter) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    let gpu: u8 = match filter.gpu {
        GpuFilter::Any => 0,
        GpuFilter::GpuOnly => 1,
        GpuFilter::CpuOnly => 2,
    };
    let mut hash = OFFSET_BASIS;
    let fields = [
        filter.device_type.as_bytes(),
        &[0xff, gpu, 0xff],
        filter.supported_model.as_bytes(),
    ];
    for byte in fields.iter().flat_map(|field| field.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuda() -> WorkerFilter {
        WorkerFilter {
            device_type: "cuda".to_string(),
            ..WorkerFilter::default()
        }
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(effective_page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(effective_page_size(7), 7);
        assert_eq!(effective_page_size(10_000), MAX_PAGE_SIZE);
        assert_eq!(effective_page_size(u32::MAX), MAX_PAGE_SIZE);
    }

    #[test]
    fn token_round_trips() {
        for id in ["w1", "worker/é/ü", "x"] {
            let token = encode_token(&cuda(), id);
            assert_eq!(decode_token(&cuda(), &token).unwrap().as_deref(), Some(id));
        }
        assert_eq!(decode_token(&cuda(), "").unwrap(), None);
    }

    #[test]
    fn malformed_tokens_rejected() {
        let valid = encode_token(&cuda(), "w1");
        let cases = [
            "zz".to_string(),
            "0123456789abcdef".to_string(),
            format!("{valid}0"),
            format!("{}zz", &valid[..valid.len() - 2]),
            format!("{}ff", &valid[..16]),
            "é".repeat(10),
        ];
        for token in cases {
            match decode_token(&cuda(), &token) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "page_token"),
                other => panic!("{token:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn token_bound_to_filter() {
        let token = encode_token(&cuda(), "w1");
        let other = WorkerFilter {
            gpu: GpuFilter::GpuOnly,
            ..cuda()
        };
        let message = decode_token(&other, &token).unwrap_err().to_string();
        assert!(message.contains("different filter"), "{message}");
    }
}
