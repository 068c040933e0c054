//! The `dlock:lock/redis` import itself: linking it ([`ctx`]), running `redis-eval` and
//! `redis-eval-all` ([`eval`]: the request read in place, the reply flattened), waiting for a
//! release ([`wait`]), and the locks the call in progress took ([`grants`]).

#[cfg(feature = "runtime")]
pub(crate) mod ctx;
#[cfg(feature = "runtime")]
pub(crate) mod eval;
#[cfg(feature = "runtime")]
pub(crate) mod grants;
pub(crate) mod reply;
#[cfg(feature = "runtime")]
pub(crate) mod request;
#[cfg(feature = "runtime")]
pub(crate) mod wait;
#[cfg(feature = "runtime")]
pub(crate) mod wit;
