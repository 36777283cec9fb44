//! The outbound policy for addresses a tenant or a provider chose (webhook
//! URLs, and any future tenant-entered host): no loopback, private,
//! link-local, unique-local, multicast, reserved or cloud-metadata
//! destinations, unless the operator allowlists them with
//! `PLUGBOARD_OUTBOUND_ALLOW`.
//!
//! It is enforced twice with the same rules: [`Policy::check_url`] before a
//! request is built (literal IPs never reach a resolver), and
//! [`GuardedResolver`] at connect time, on the addresses a name resolves to,
//! so a name that resolves to a public address at save time and to
//! 127.0.0.1 later (DNS rebinding) is still refused.
//!
//! Addresses the operator configures (provider base URLs, OAuth endpoints,
//! hand-off targets, the sandbox) don't go through this policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The settings key, named in parse errors.
pub const ALLOW_VAR: &str = "PLUGBOARD_OUTBOUND_ALLOW";

/// Host names of cloud metadata services (they resolve to link-local or
/// unique-local addresses anyway; refusing the names makes the intent
/// visible at save time).
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
];

/// An IP range, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(net.to_bits(), ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }

    /// `10.0.0.0/8`, `fd00::/8`, or a single address (`127.0.0.1`, `::1`,
    /// `[::1]`).
    fn parse(raw: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0 to {max}"))?,
        };
        match (addr, canonical(addr)) {
            // ::ffff:a.b.c.d/n written as IPv6 is an IPv4 range.
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) => match prefix.checked_sub(96) {
                Some(prefix) => Ok(Cidr { addr: v4, prefix }),
                None => Err(format!(
                    "{raw:?}: an IPv4-mapped range needs a prefix of at least 96"
                )),
            },
            (addr, _) => Ok(Cidr { addr, prefix }),
        }
    }
}

/// Whether the first `prefix` of `bits` high bits agree.
fn prefix_matches(net: u128, ip: u128, bits: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits.saturating_sub(prefix.min(bits)));
    net.checked_shr(shift) == ip.checked_shr(shift)
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`) as the IPv4 address it is: the
/// kernel connects to that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// IPv4 ranges that are not public unicast: "this network", private,
/// CGNAT, loopback, link-local (cloud metadata), protocol assignments,
/// documentation, benchmarking, 6to4 relay, multicast, reserved and
/// broadcast.
const DENIED_V4: &[Cidr] = &[
    Cidr::v4(0, 0, 0, 0, 8),
    Cidr::v4(10, 0, 0, 0, 8),
    Cidr::v4(100, 64, 0, 0, 10),
    Cidr::v4(127, 0, 0, 0, 8),
    Cidr::v4(169, 254, 0, 0, 16),
    Cidr::v4(172, 16, 0, 0, 12),
    Cidr::v4(192, 0, 0, 0, 24),
    Cidr::v4(192, 0, 2, 0, 24),
    Cidr::v4(192, 88, 99, 0, 24),
    Cidr::v4(192, 168, 0, 0, 16),
    Cidr::v4(198, 18, 0, 0, 15),
    Cidr::v4(198, 51, 100, 0, 24),
    Cidr::v4(203, 0, 113, 0, 24),
    Cidr::v4(224, 0, 0, 0, 4),
    Cidr::v4(240, 0, 0, 0, 4),
    // Azure's host endpoint (wireserver): public-looking, VM-local.
    Cidr::v4(168, 63, 129, 16, 32),
];

/// IPv6 ranges that are not public unicast. IPv4-mapped addresses are
/// checked as IPv4 (see [`canonical`]); NAT64 and 6to4 by the IPv4 address
/// they embed.
const DENIED_V6: &[Cidr] = &[
    // Unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d.
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
    // Local-use NAT64.
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    // Discard-only.
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    // Teredo (embeds an obfuscated IPv4 address).
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
    // Documentation.
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
    // Unique-local (AWS metadata fd00:ec2::254 included).
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    // Link-local, and the deprecated site-local.
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
    // Multicast.
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
];

const NAT64: Cidr = Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Cidr = Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// Whether `ip` is outside public unicast space (before any allowlist).
pub fn is_denied_ip(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => DENIED_V4.iter().any(|c| c.contains(IpAddr::V4(v4))),
        IpAddr::V6(v6) => {
            let ip = IpAddr::V6(v6);
            let bits = v6.to_bits();
            // The low 32 bits (NAT64) or bits 16..48 (6to4) are IPv4.
            let embedded = if NAT64.contains(ip) {
                Some(Ipv4Addr::from_bits(bits as u32))
            } else if SIX_TO_FOUR.contains(ip) {
                Some(Ipv4Addr::from_bits((bits >> 80) as u32))
            } else {
                None
            };
            match embedded {
                Some(v4) => is_denied_ip(IpAddr::V4(v4)),
                None => DENIED_V6.iter().any(|c| c.contains(ip)),
            }
        }
    }
}

fn is_metadata_host(host: &str) -> bool {
    METADATA_HOSTS
        .iter()
        .any(|m| host == *m || host.strip_suffix(m).is_some_and(|p| p.ends_with('.')))
}

/// A host name as compared: lower case, without a trailing dot.
fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `PLUGBOARD_OUTBOUND_ALLOW`: host names and IP ranges the operator lets
/// tenant-chosen URLs reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    hosts: Vec<String>,
    ranges: Vec<Cidr>,
}

impl Allowlist {
    /// Comma-separated `127.0.0.1`, `10.0.0.0/8`, `[::1]`, `fd00::/8` or
    /// `hooks.internal`. Errors name the setting.
    pub fn parse(raw: &str) -> Result<Allowlist, String> {
        let mut list = Allowlist::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let looks_like_ip = entry.contains(':')
                || entry.contains('/')
                || entry.starts_with('[')
                || entry.parse::<Ipv4Addr>().is_ok();
            if looks_like_ip {
                list.ranges
                    .push(Cidr::parse(entry).map_err(|e| format!("{ALLOW_VAR}: {e}"))?);
            } else if is_host_name(entry) {
                list.hosts.push(normal_host(entry));
            } else {
                return Err(format!(
                    "{ALLOW_VAR}: {entry:?} is neither a host name nor an IP address or range \
                     (expected e.g. 127.0.0.1,10.0.0.0/8,hooks.internal)"
                ));
            }
        }
        Ok(list)
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = normal_host(host);
        self.hosts.contains(&host)
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.ranges.iter().any(|r| r.contains(ip))
    }
}

/// Letters, digits, hyphens and dots, as DNS names are written.
fn is_host_name(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    // A numeric last label is a mistyped address (10.0.0), not a name.
    let numeric_tld = s
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    !s.is_empty()
        && !numeric_tld
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Why a URL is refused before any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("expected an http(s) URL")]
    NotHttp,
    #[error(
        "this address is not allowed: loopback, private, link-local and cloud-metadata \
         addresses are refused (the operator can allow hosts with {ALLOW_VAR})"
    )]
    NotAllowed,
}

/// A connect-time refusal, found in a request error's source chain.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("address not allowed")]
pub struct AddressNotAllowed;

/// Whether a request error came from this policy.
pub fn is_not_allowed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<AddressNotAllowed>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Allowlist,
}

impl Policy {
    pub fn new(allow: Allowlist) -> Self {
        Policy { allow }
    }

    /// The check made before a request (and when a URL is saved): the
    /// scheme, literal IP hosts and metadata host names. Other names are
    /// checked on what they resolve to, at connect time.
    pub fn check_url(&self, url: &Url) -> Result<(), UrlRefused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::NotHttp);
        }
        let host = url.host_str().ok_or(UrlRefused::NotHttp)?;
        // The URL parser has already normalised 0x7f.1, 2130706433 and the like.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip),
            Err(_) if is_metadata_host(&normal_host(host)) && !self.allow.allows_host(host) => {
                Err(UrlRefused::NotAllowed)
            }
            Err(_) => Ok(()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), UrlRefused> {
        if self.allows_address(ip) {
            Ok(())
        } else {
            Err(UrlRefused::NotAllowed)
        }
    }

    fn allows_address(&self, ip: IpAddr) -> bool {
        !is_denied_ip(ip) || self.allow.allows_ip(ip)
    }

    /// What a resolved name may connect to: everything for an allowlisted
    /// name, else only the allowed addresses.
    fn filter(
        &self,
        name: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, AddressNotAllowed> {
        if self.allow.allows_host(name) {
            return Ok(addrs);
        }
        if is_metadata_host(&normal_host(name)) {
            return Err(AddressNotAllowed);
        }
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.allows_address(a.ip()))
            .collect();
        if allowed.is_empty() {
            Err(AddressNotAllowed)
        } else {
            Ok(allowed)
        }
    }
}

/// The resolver of the guarded client: the system's resolution, then the
/// policy on every address, so the address checked is the one connected to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.filter(&host, addrs)?;
            Ok::<Addrs, Box<dyn std::error::Error + Send + Sync>>(Box::new(allowed.into_iter()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_classification() {
        for denied in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "192.0.0.192",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "168.63.129.16",
        ] {
            assert!(is_denied_ip(ip(denied)), "{denied} should be denied");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "11.0.0.1",
            "193.0.0.1",
            "223.255.255.255",
            "168.63.129.17",
        ] {
            assert!(!is_denied_ip(ip(public)), "{public} should be allowed");
        }
    }

    #[test]
    fn ipv6_classification_including_mapped_forms() {
        for denied in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:0101::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(is_denied_ip(ip(denied)), "{denied} should be denied");
        }
        for public in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!is_denied_ip(ip(public)), "{public} should be allowed");
        }
    }

    #[test]
    fn urls_with_literal_denied_addresses_or_metadata_names_are_refused() {
        let policy = Policy::default();
        let check = |u: &str| policy.check_url(&Url::parse(u).unwrap());
        for refused in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/hook",
            "http://0x7f.1/hook",
            "http://2130706433/hook",
            "http://0/hook",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./x",
            "http://metadata/x",
            "http://[fd00:ec2::254]/",
        ] {
            assert_eq!(check(refused), Err(UrlRefused::NotAllowed), "{refused}");
        }
        assert_eq!(check("ftp://example.com/x"), Err(UrlRefused::NotHttp));
        for fine in [
            "https://hooks.example.com/x",
            "http://8.8.8.8/x",
            "http://[2606:4700:4700::1111]/x",
            // Names are judged on what they resolve to, at connect time.
            "http://localhost:9/x",
            "http://notmetadata.google.internal.example/x",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn the_allowlist_opens_hosts_and_ranges() {
        let allow =
            Allowlist::parse(" 127.0.0.1, 10.0.0.0/8,[::1], fd00::/8 ,Hooks.Internal.,").unwrap();
        let policy = Policy::new(allow);
        let check = |u: &str| policy.check_url(&Url::parse(u).unwrap());
        for fine in [
            "http://127.0.0.1:1234/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://10.200.3.4/x",
            "http://[::1]/x",
            "http://[fd12::1]/x",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
        for refused in [
            "http://127.0.0.2/x",
            "http://192.168.0.1/x",
            "http://[fe80::1]/x",
        ] {
            assert_eq!(check(refused), Err(UrlRefused::NotAllowed), "{refused}");
        }
        let lo = SocketAddr::from(([127, 0, 0, 1], 80));
        let private = SocketAddr::from(([192, 168, 0, 9], 80));
        let public = SocketAddr::from(([8, 8, 8, 8], 80));
        // An allowlisted name may resolve anywhere.
        assert_eq!(
            policy.filter("hooks.internal", vec![private]).unwrap(),
            vec![private]
        );
        // Other names keep only allowed addresses, and fail with none left.
        assert_eq!(
            policy
                .filter("x.example", vec![private, public, lo])
                .unwrap(),
            vec![public, lo]
        );
        assert!(policy.filter("x.example", vec![private]).is_err());
        assert!(Policy::default().filter("localhost", vec![lo]).is_err());
        assert!(
            Policy::default()
                .filter("metadata.google.internal", vec![public])
                .is_err()
        );
    }

    #[test]
    fn allowlist_errors_name_the_setting() {
        assert_eq!(Allowlist::parse("").unwrap(), Allowlist::default());
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "10.0.0/8",
            "999.1.1.1/8",
            "hooks internal",
            "http://x",
            "a..b",
            "10.0.0",
        ] {
            let err = Allowlist::parse(bad).unwrap_err();
            assert!(err.starts_with(ALLOW_VAR), "{bad}: {err}");
        }
        let list = Allowlist::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(list.allows_ip(ip("10.9.9.9")));
        assert!(!list.allows_ip(ip("11.0.0.1")));
    }

    #[test]
    fn errors_of_the_resolver_are_recognised() {
        let err: Box<dyn std::error::Error + Send + Sync> = Box::new(AddressNotAllowed);
        assert!(is_not_allowed(err.as_ref()));
        let other = std::io::Error::other("refused");
        assert!(!is_not_allowed(&other));
    }
}
