//! The locks a call into the component may have taken, as the host sees them go by, so that a
//! call that traps or is cancelled does not leave them behind.
//!
//! The host recognises the bundled component's acquire and release scripts by SHA1, the lock's
//! and the counting semaphore's. An acquire attempt notes its key, token and what it takes
//! (the lock, or a number of permits) before it is sent (the attempt may succeed even if its
//! reply never arrives); a busy reply or a release forgets it. The list belongs to the call in
//! progress: it starts empty at every call, so a call that completes hands every lock it took
//! to its caller (as a handle) and the list holds nothing of earlier calls. When a call fails
//! (a trap, a budget overrun, or its future dropped), the client is poisoned and the locks
//! *that call* noted are released in the background with the same compare-and-delete script
//! (permits with the semaphore's release script, which removes only the token's own permits):
//! a lock that was never taken, or has since changed hands, is left alone, and locks whose
//! handles earlier calls returned stay in Redis until they are released or expire. Scripts of
//! other components are not recognised; their locks expire with their TTL.

use std::sync::Mutex;

/// Most pairs remembered for one call. The bundled component notes one per call (its retries
/// reuse the token); past this the oldest are forgotten (and expire with their TTL), so a
/// component cannot make the host hold more than this many keys and tokens.
pub(crate) const MAX_GRANTS: usize = 64;

/// What an acquire attempt may have taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The lock key.
    #[default]
    Lock,
    /// This many permits of a counting semaphore.
    Permits(u32),
}

/// One noted acquisition: key, token, and what it took.
pub(crate) type Grant = (String, String, Taken);

/// The grants the call in progress may have acquired.
#[derive(Debug, Default)]
pub(crate) struct Grants(Mutex<Noted>);

/// The noted grants are `pairs[..len]`, oldest first; the slots past `len` keep their
/// strings' buffers for the next notes, so that noting allocates nothing once a client is warm.
#[derive(Debug, Default)]
struct Noted {
    pairs: Vec<Grant>,
    len: usize,
}

impl Grants {
    fn with<R>(&self, f: impl FnOnce(&mut Noted) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// An acquire of `key` with `token`, taking `taken`, is about to be sent.
    pub(crate) fn note(&self, key: &str, token: &str, taken: Taken) {
        self.with(|noted| {
            if noted.position(key, token).is_some() {
                return;
            }
            if noted.len == MAX_GRANTS {
                noted.remove(0);
            }
            if noted.len == noted.pairs.len() {
                noted.pairs.push((key.to_owned(), token.to_owned(), taken));
            } else {
                let (k, t, what) = &mut noted.pairs[noted.len];
                k.clear();
                k.push_str(key);
                t.clear();
                t.push_str(token);
                *what = taken;
            }
            noted.len += 1;
        });
    }

    /// `key` certainly does not hold `token` any more (busy reply, or released).
    pub(crate) fn forget(&self, key: &str, token: &str) {
        self.with(|noted| {
            if let Some(i) = noted.position(key, token) {
                noted.remove(i);
            }
        });
    }

    /// Forgets everything noted (a new call begins).
    pub(crate) fn clear(&self) {
        self.with(|noted| noted.len = 0);
    }

    /// Everything noted, emptying the list.
    pub(crate) fn take(&self) -> Vec<Grant> {
        self.with(|noted| {
            let len = std::mem::take(&mut noted.len);
            noted.pairs.drain(..len).collect()
        })
    }
}

impl Noted {
    fn position(&self, key: &str, token: &str) -> Option<usize> {
        self.pairs[..self.len]
            .iter()
            .position(|(k, t, _)| k == key && t == token)
    }

    /// Forgets the `i`th pair, keeping the others' order and its buffers for reuse.
    fn remove(&mut self, i: usize) {
        self.pairs[i..self.len].rotate_left(1);
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{Grants, Taken};

    #[test]
    fn grants_are_noted_once_and_forgotten_by_key_and_token() {
        let grants = Grants::default();
        grants.note("a", "t1", Taken::Lock);
        grants.note("a", "t1", Taken::Lock);
        grants.note("a", "t2", Taken::Lock);
        grants.note("b", "t1", Taken::Permits(3));
        grants.forget("a", "t1");
        assert_eq!(
            grants.take(),
            [
                ("a".into(), "t2".into(), Taken::Lock),
                ("b".into(), "t1".into(), Taken::Permits(3))
            ]
        );
        assert!(grants.take().is_empty());
    }

    #[test]
    fn a_cleared_list_notes_afresh_in_reused_slots() {
        let grants = Grants::default();
        grants.note("a", "t1", Taken::Lock);
        grants.note("b", "t2", Taken::Lock);
        grants.clear();
        assert!(grants.take().is_empty());
        grants.note("c", "token-longer-than-before", Taken::Lock);
        grants.note("a", "t1", Taken::Lock);
        grants.forget("c", "token-longer-than-before");
        grants.note("d", "t4", Taken::Lock);
        assert_eq!(
            grants.take(),
            [
                ("a".into(), "t1".into(), Taken::Lock),
                ("d".into(), "t4".into(), Taken::Lock)
            ]
        );
    }

    #[test]
    fn the_list_is_bounded_and_forgets_the_oldest_first() {
        let grants = Grants::default();
        for i in 0..=super::MAX_GRANTS {
            grants.note(&format!("k{i}"), "t", Taken::Lock);
        }
        let kept = grants.take();
        assert_eq!(kept.len(), super::MAX_GRANTS);
        assert_eq!(kept[0].0, "k1");
    }
}
