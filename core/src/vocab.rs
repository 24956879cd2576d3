//! The names users type for core's small enums ([`Backend`], [`Method`], [`Family`],
//! [`Side`], [`TcpState`]), in one place, so that every face (the runner's flags, the lesson
//! binaries, Python) accepts the same spellings and lists the same choices.
//!
//! Each type has `ALL`, `FromStr` (case-insensitive, with a few aliases) and `Display`;
//! [`Vocabulary::names`] gives the spellings to offer, e.g. as clap's possible values.
//! TcpState keeps its own, richer parser (RFC, netstat and `ss` spellings) in [`crate::state`].

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::observe::trace::Backend;
use crate::observe::{Family, Method};
use crate::state::TcpState;
use crate::timeline::Side;

/// An enum whose values users name.
pub trait Vocabulary: Copy + FromStr<Err = Error> + fmt::Display + 'static {
    /// What one value is called in messages: `backend`.
    const WHAT: &'static str;
    /// Every value, in the order choices are listed.
    fn all() -> &'static [Self];
    /// The spelling offered to users (and accepted).
    fn name(self) -> &'static str;
    /// Other spellings accepted, lower case.
    fn aliases(self) -> &'static [&'static str] {
        &[]
    }
    /// The offered spellings of every value, in order.
    fn names() -> Vec<&'static str> {
        Self::all().iter().map(|v| v.name()).collect()
    }
}

/// Parse `text` as one of `T`'s names or aliases, ignoring case and surrounding blanks.
fn parse<T: Vocabulary>(text: &str) -> Result<T, Error> {
    let norm = text.trim().to_ascii_lowercase();
    T::all()
        .iter()
        .copied()
        .find(|v| v.name() == norm || v.aliases().contains(&norm.as_str()))
        .ok_or_else(|| Error::UnknownName {
            what: T::WHAT,
            name: text.to_string(),
            valid: T::names().join(", "),
        })
}

macro_rules! vocabulary {
    ($ty:ident, $what:literal, [$($v:ident => $name:literal $(| $alias:literal)*),+ $(,)?]) => {
        impl $ty {
            /// Every value, in the order choices are listed.
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];
        }

        impl Vocabulary for $ty {
            const WHAT: &'static str = $what;
            fn all() -> &'static [Self] {
                <$ty>::ALL
            }
            fn name(self) -> &'static str {
                match self {
                    $($ty::$v => $name,)+
                }
            }
            fn aliases(self) -> &'static [&'static str] {
                match self {
                    $($ty::$v => &[$($alias),*],)+
                }
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                parse(s)
            }
        }
    };
}

vocabulary!(Backend, "backend", [
    Auto => "auto",
    Tracepoint => "tracepoint",
    Poll => "poll",
]);

vocabulary!(Method, "method", [
    Auto => "auto",
    Netlink => "netlink" | "sock_diag",
    Proc => "proc" | "/proc/net/tcp",
]);

vocabulary!(Family, "address family", [
    Both => "all" | "both",
    V4 => "4" | "v4" | "ipv4",
    V6 => "6" | "v6" | "ipv6",
]);

vocabulary!(Side, "side", [
    Client => "client",
    Server => "server",
]);

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Vocabulary for TcpState {
    const WHAT: &'static str = "TCP state";
    fn all() -> &'static [Self] {
        &TcpState::ALL
    }
    fn name(self) -> &'static str {
        self.netstat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Vocabulary + PartialEq + fmt::Debug>() {
        for &v in T::all() {
            assert_eq!(v.name().parse::<T>().unwrap(), v, "{}", v.name());
            assert_eq!(v.to_string().parse::<T>().unwrap(), v, "{v}");
            assert_eq!(v.name().to_uppercase().parse::<T>().unwrap(), v);
            for a in v.aliases() {
                assert_eq!(a.parse::<T>().unwrap(), v, "{a}");
            }
        }
    }

    #[test]
    fn every_name_and_display_parses_back() {
        round_trip::<Backend>();
        round_trip::<Method>();
        round_trip::<Family>();
        round_trip::<Side>();
        round_trip::<TcpState>();
    }

    #[test]
    fn unknown_names_list_the_choices() {
        let e = "ebpf".parse::<Backend>().unwrap_err().to_string();
        assert_eq!(e, "unknown backend \"ebpf\"; valid: auto, tracepoint, poll");
        let e = "pcap".parse::<Method>().unwrap_err().to_string();
        assert!(
            e.contains("unknown method") && e.contains("auto, netlink, proc"),
            "{e}"
        );
        assert!("middle".parse::<Side>().is_err());
        assert_eq!(Family::names(), ["all", "4", "6"]);
    }
}
