//! The deterministic random generators of a step without the `random` grant.
//!
//! Each is a ChaCha20 generator (the `chacha20` crate, whose output for a
//! seed is fixed by its specification, so it is the same in every weft
//! version and process) seeded by SHA-256 of the execution's idempotency key
//! and the attempt number: a redelivered attempt reads the same bytes, a
//! retry (the next attempt) and any other execution read other bytes.
//! `wasi:random/random` and `wasi:random/insecure` read two streams of that
//! seed; `wasi:random/insecure-seed` is derived from it too.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// Bumped if the derivation ever changes (it changes what guests read).
const DOMAIN: &[u8] = b"weft deterministic random v1\0";

/// The seed of an execution's attempt.
pub(crate) fn seed(idempotency_key: &str, attempt: u32) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update((idempotency_key.len() as u64).to_le_bytes());
    hasher.update(idempotency_key.as_bytes());
    hasher.update(attempt.to_le_bytes());
    hasher.finalize().into()
}

/// The generators for `wasi:random/random` and `wasi:random/insecure`, and
/// the value of `wasi:random/insecure-seed`.
pub(crate) fn generators(seed: &[u8; 32]) -> (ChaCha20Rng, ChaCha20Rng, u128) {
    let secure = ChaCha20Rng::from_seed(*seed);
    let mut insecure = ChaCha20Rng::from_seed(*seed);
    insecure.set_stream(1);
    let mut derive = ChaCha20Rng::from_seed(*seed);
    derive.set_stream(2);
    let mut bytes = [0u8; 16];
    derive.fill_bytes(&mut bytes);
    (secure, insecure, u128::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_u64(key: &str, attempt: u32) -> u64 {
        generators(&seed(key, attempt)).0.next_u64()
    }

    #[test]
    fn the_same_attempt_reads_the_same_bytes() {
        assert_eq!(first_u64("run/a", 1), first_u64("run/a", 1));
        assert_ne!(first_u64("run/a", 1), first_u64("run/a", 2));
        assert_ne!(first_u64("run/a", 1), first_u64("run/b", 1));
        let (mut secure, mut insecure, _) = generators(&seed("run/a", 1));
        assert_ne!(secure.next_u64(), insecure.next_u64());
    }
}
