//! Rate limits: how much one source address, account or device may ask of
//! the server, so that nobody can flood the directory with accounts, drain
//! another user's KeyPackages or fill the logs.
//!
//! Each limit is a token bucket (GCRA, the `governor` crate): a [`Rate`] of
//! N per period allows a burst of N, refilled evenly over the period. A
//! request beyond it is refused with 429, a `Retry-After` header and the
//! `rate_limited` error, whose message names the limit and whose
//! `retry_after_secs` says when to try again. The buckets live in each
//! node's memory: with several nodes behind one name, each node grants the
//! full rate.
//!
//! Source addresses are counted as seen on the connection: an IPv6 address
//! by its /64 prefix (what one host usually holds), an IPv4 address alone.
//! Behind a reverse proxy every request comes from the proxy's address, so
//! the per-address limits then apply to everyone at once.

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use rempart_proto::{DeviceId, UserName};

use crate::error::ApiError;

/// N requests per period: a burst of N, refilled evenly over the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    per: Duration,
}

/// `count` per `per`; `None` (no limit) when either is zero.
const fn rate(count: u32, per: Duration) -> Option<Rate> {
    match NonZeroU32::new(count) {
        Some(count) if !per.is_zero() => Some(Rate { count, per }),
        _ => None,
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

impl Rate {
    /// `count` per `per`; `None` when either is zero.
    pub const fn new(count: u32, per: Duration) -> Option<Self> {
        rate(count, per)
    }

    /// The burst, and the number of requests per period.
    pub fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    fn quota(&self) -> Quota {
        let every = (self.per / self.count.get()).max(Duration::from_nanos(1));
        Quota::with_period(every)
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.per.as_secs();
        let (n, unit) = match secs {
            s if s % 86_400 == 0 => (s / 86_400, "d"),
            s if s % 3600 == 0 => (s / 3600, "h"),
            s if s % 60 == 0 => (s / 60, "min"),
            s => (s, "s"),
        };
        if n == 1 {
            write!(f, "{}/{unit}", self.count)
        } else {
            write!(f, "{}/{n}{unit}", self.count)
        }
    }
}

/// Why a rate could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a rate: write COUNT/PERIOD, such as 20/h, 600/min, 10/30s or 5/d (or `off`)")]
pub struct RateParseError(String);

impl FromStr for Rate {
    type Err = RateParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RateParseError(text.to_owned());
        let (count, period) = text.trim().split_once('/').ok_or_else(error)?;
        let count: u32 = count.trim().parse().map_err(|_| error())?;
        let period = period.trim();
        let digits = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (times, unit) = period.split_at(digits);
        let times: u64 = if times.is_empty() {
            1
        } else {
            times.parse().map_err(|_| error())?
        };
        let unit = match unit {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(error()),
        };
        let secs = times.checked_mul(unit).ok_or_else(error)?;
        rate(count, Duration::from_secs(secs)).ok_or_else(error)
    }
}

/// Every rate limit the server applies; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Accounts registered, per source address: each is permanent in the
    /// key-transparency directory.
    pub registrations: Option<Rate>,
    /// Device lists published, per account (each new version is permanent
    /// in the directory).
    pub device_lists: Option<Rate>,
    /// KeyPackages claimed, per claiming account: a batch claim counts each
    /// user it names.
    pub claims: Option<Rate>,
    /// KeyPackage claims of one user's devices by other accounts, per
    /// claimed user: nobody can drain a user's one-time KeyPackages faster
    /// than this.
    pub claims_of_user: Option<Rate>,
    /// Messages and commits sent, per device, over HTTP or the session.
    pub sends: Option<Rate>,
    /// What those messages and commits weigh, in KiB, per account: with
    /// the limit on sends, what bounds how fast an account grows the logs.
    pub send_kib: Option<Rate>,
    /// Directory lookups, histories and device-list reads, per source
    /// address.
    pub lookups: Option<Rate>,
    /// Device-linking attempts (a link opened, a request put), per source
    /// address.
    pub links: Option<Rate>,
}

impl RateLimits {
    /// The limits a server applies unless told otherwise.
    pub const DEFAULT: Self = Self {
        registrations: rate(10, HOUR),
        device_lists: rate(60, HOUR),
        claims: rate(1000, HOUR),
        claims_of_user: rate(10, HOUR),
        sends: rate(1200, MINUTE),
        send_kib: rate(64 * 1024, HOUR),
        lookups: rate(3000, MINUTE),
        links: rate(30, HOUR),
    };

    /// No limit at all (for tests and benchmarks that measure something
    /// else).
    pub const UNLIMITED: Self = Self {
        registrations: None,
        device_lists: None,
        claims: None,
        claims_of_user: None,
        sends: None,
        send_kib: None,
        lookups: None,
        links: None,
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A source address as the limits count it: IPv4 alone, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub(crate) fn of(address: IpAddr) -> Self {
        let address = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        };
        Self(address)
    }
}

/// One limit's buckets, by key.
struct Bucket<K: Hash + Eq + Clone> {
    /// What the limit counts, for the refusal's message.
    what: &'static str,
    /// The limit and its buckets; `None` when it is off.
    limiter: Option<(Rate, DefaultKeyedRateLimiter<K>)>,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(what: &'static str, rate: Option<Rate>) -> Self {
        Self {
            what,
            limiter: rate.map(|rate| (rate, DefaultKeyedRateLimiter::keyed(rate.quota()))),
        }
    }

    /// Takes `n` tokens from `key`'s bucket, or says when there will be
    /// enough (429), or that there never will (400: `n` exceeds the burst).
    fn take(&self, key: &K, n: usize) -> Result<(), ApiError> {
        let Some((rate, limiter)) = &self.limiter else {
            return Ok(());
        };
        let rate = *rate;
        let Some(cells) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 {
                Ok(())
            } else {
                Err(self.never(n, rate))
            };
        };
        match limiter.check_key_n(key, cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(ApiError::RateLimited {
                what: self.what,
                rate,
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            }),
            Err(_) => Err(self.never(n, rate)),
        }
    }

    fn never(&self, n: usize, rate: Rate) -> ApiError {
        ApiError::BadRequest(format!(
            "this request counts {n} {}, more than the limit of {rate} allows at once",
            self.what
        ))
    }

    /// Forgets the buckets that are full again, so that memory follows the
    /// keys active lately rather than every key ever seen.
    fn forget_idle(&self) {
        if let Some((_, limiter)) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, |(_, limiter)| limiter.len())
    }
}

/// The buckets of every limit of [`RateLimits`], shared by a node's
/// handlers.
pub(crate) struct Limiter {
    registrations: Bucket<Source>,
    device_lists: Bucket<UserName>,
    claims: Bucket<UserName>,
    claims_of_user: Bucket<UserName>,
    sends: Bucket<DeviceId>,
    send_kib: Bucket<UserName>,
    lookups: Bucket<Source>,
    links: Bucket<Source>,
}

impl Limiter {
    pub(crate) fn new(limits: &RateLimits) -> Arc<Self> {
        Arc::new(Self {
            registrations: Bucket::new("registrations from this address", limits.registrations),
            device_lists: Bucket::new("device lists from this account", limits.device_lists),
            claims: Bucket::new("KeyPackage claims by this account", limits.claims),
            claims_of_user: Bucket::new("KeyPackage claims of this user", limits.claims_of_user),
            sends: Bucket::new("messages from this device", limits.sends),
            send_kib: Bucket::new("KiB of messages from this account", limits.send_kib),
            lookups: Bucket::new("directory reads from this address", limits.lookups),
            links: Bucket::new("link attempts from this address", limits.links),
        })
    }

    /// A registration from `source`.
    pub(crate) fn register(&self, source: Source) -> Result<(), ApiError> {
        self.registrations.take(&source, 1)
    }

    /// A directory read from `source`.
    pub(crate) fn lookup(&self, source: Source) -> Result<(), ApiError> {
        self.lookups.take(&source, 1)
    }

    /// A link attempt from `source`.
    pub(crate) fn link(&self, source: Source) -> Result<(), ApiError> {
        self.links.take(&source, 1)
    }

    /// A device list published by `user`.
    pub(crate) fn device_list(&self, user: &UserName) -> Result<(), ApiError> {
        self.device_lists.take(user, 1)
    }

    /// A message or commit of `bytes` from `device` of `user`.
    pub(crate) fn send(
        &self,
        device: &DeviceId,
        user: &UserName,
        bytes: usize,
    ) -> Result<(), ApiError> {
        self.sends.take(device, 1)?;
        self.send_kib.take(user, bytes.div_ceil(1024).max(1))
    }

    /// A claim by `claimer` of the KeyPackages of `users` (each counted
    /// once): the claimer's bucket pays for every user, and each other
    /// user's own bucket for itself. Claims of one's own devices (a new
    /// device added to one's groups) cost only the claimer's bucket.
    pub(crate) fn claim<'a>(
        &self,
        claimer: &UserName,
        users: impl IntoIterator<Item = &'a UserName>,
    ) -> Result<(), ApiError> {
        let mut seen = std::collections::HashSet::new();
        let users: Vec<&UserName> = users.into_iter().filter(|u| seen.insert(*u)).collect();
        self.claims.take(claimer, users.len())?;
        for user in users.into_iter().filter(|user| *user != claimer) {
            self.claims_of_user.take(user, 1)?;
        }
        Ok(())
    }

    /// Forgets every bucket that is full again.
    pub(crate) fn forget_idle(&self) {
        self.registrations.forget_idle();
        self.device_lists.forget_idle();
        self.claims.forget_idle();
        self.claims_of_user.forget_idle();
        self.sends.forget_idle();
        self.send_kib.forget_idle();
        self.lookups.forget_idle();
        self.links.forget_idle();
    }

    /// How many keys the buckets hold (for tests of [`Self::forget_idle`]).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.registrations.keys()
            + self.device_lists.keys()
            + self.claims.keys()
            + self.claims_of_user.keys()
            + self.sends.keys()
            + self.send_kib.keys()
            + self.lookups.keys()
            + self.links.keys()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserName {
        name.parse().unwrap()
    }

    #[test]
    fn rates_read_and_print_alike() {
        for text in ["20/h", "600/min", "10/30s", "5/d", "3/2h", "1/s"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string(), text);
        }
        assert_eq!(
            "10/90min".parse::<Rate>().unwrap().per(),
            Duration::from_secs(5400)
        );
        for wrong in ["", "20", "0/h", "20/0h", "20/week", "x/h", "-1/h", "20/h/h"] {
            assert!(wrong.parse::<Rate>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn a_burst_passes_and_the_next_request_is_told_when_to_retry() {
        let limiter = Limiter::new(&RateLimits {
            registrations: Rate::new(3, HOUR),
            ..RateLimits::UNLIMITED
        });
        let source = Source::of("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            limiter.register(source).unwrap();
        }
        match limiter.register(source) {
            Err(ApiError::RateLimited { retry_after, .. }) => {
                // One token comes back every 20 minutes.
                assert!(
                    retry_after > Duration::from_secs(19 * 60),
                    "{retry_after:?}"
                );
                assert!(
                    retry_after <= Duration::from_secs(20 * 60),
                    "{retry_after:?}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Another address has its own bucket.
        limiter
            .register(Source::of("192.0.2.2".parse().unwrap()))
            .unwrap();
    }

    #[test]
    fn an_ipv6_host_counts_by_its_prefix_and_a_mapped_ipv4_as_itself() {
        let a = Source::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = Source::of("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = Source::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            Source::of("::ffff:192.0.2.1".parse().unwrap()),
            Source::of("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn a_batch_claim_counts_each_user_and_own_devices_cost_only_the_claimer() {
        let limiter = Limiter::new(&RateLimits {
            claims: Rate::new(5, HOUR),
            claims_of_user: Rate::new(2, HOUR),
            ..RateLimits::UNLIMITED
        });
        let (mallory, alice, bob) = (user("mallory"), user("alice"), user("bob"));
        // Alice's own devices: her bucket of claims of her is untouched.
        limiter.claim(&alice, [&alice, &alice]).unwrap();
        limiter.claim(&mallory, [&alice, &bob]).unwrap();
        limiter.claim(&mallory, [&alice]).unwrap();
        assert!(matches!(
            limiter.claim(&bob, [&alice]),
            Err(ApiError::RateLimited { .. })
        ));
        // Mallory has used 3 of 5: a batch of 3 more is refused.
        assert!(matches!(
            limiter.claim(&mallory, [&user("carol"), &user("dave"), &user("erin")]),
            Err(ApiError::RateLimited { .. })
        ));
        // A batch larger than the burst can never pass: not a 429.
        let many: Vec<UserName> = (0..6).map(|i| user(&format!("user{i}"))).collect();
        assert!(matches!(
            limiter.claim(&bob, &many),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn unlimited_counts_nothing() {
        let limiter = Limiter::new(&RateLimits::UNLIMITED);
        let source = Source::of("192.0.2.1".parse().unwrap());
        for _ in 0..1000 {
            limiter.register(source).unwrap();
        }
        assert_eq!(limiter.keys(), 0);
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let limiter = Limiter::new(&RateLimits {
            lookups: Rate::new(1000, Duration::from_secs(1)),
            ..RateLimits::UNLIMITED
        });
        for i in 0..100u8 {
            limiter
                .lookup(Source::of(IpAddr::from([192, 0, 2, i])))
                .unwrap();
        }
        assert_eq!(limiter.keys(), 100);
        // One token back every millisecond: full again well within this.
        std::thread::sleep(Duration::from_millis(50));
        limiter.forget_idle();
        assert_eq!(limiter.keys(), 0);
    }
}
