//! The system calls a script makes on the socket under test, with their arguments filled in
//! as packetdrill fills them: `...` for an address is the kernel's own (bind) or the peer's
//! (connect), `...` for a buffer is zeros of the given length.
//!
//! A script's file descriptor numbers are its own: `socket(...) = 3` maps 3 to whatever
//! descriptor this process got, and later lines say 3.
//!
//! Left out on purpose: sendmsg/recvmsg, poll/epoll, getsockopt, ioctl; a script that calls
//! them gets an error naming the call.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::Mutex;

use super::link::{LOCAL_IP, REMOTE_IP};
use super::script::{Arg, Syscall};

/// The port `bind(..., ...)` binds and `connect(..., ...)` connects to, as in packetdrill.
pub const PORT: u16 = 8080;

/// Script descriptor -> this process's descriptor.
pub type FdTable = Mutex<HashMap<i64, i32>>;

/// What a call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub ret: i64,
    /// errno when `ret` is -1.
    pub errno: Option<i32>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errno {
            Some(e) => write!(
                f,
                "-1 {} ({})",
                errno_name(e),
                std::io::Error::from_raw_os_error(e)
            ),
            None => write!(f, "{}", self.ret),
        }
    }
}

const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("EINTR", libc::EINTR),
    ("EBADF", libc::EBADF),
    ("EAGAIN", libc::EAGAIN),
    ("EWOULDBLOCK", libc::EWOULDBLOCK),
    ("EFAULT", libc::EFAULT),
    ("EINVAL", libc::EINVAL),
    ("EPIPE", libc::EPIPE),
    ("ENOTSOCK", libc::ENOTSOCK),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNABORTED", libc::ECONNABORTED),
    ("ECONNRESET", libc::ECONNRESET),
    ("EISCONN", libc::EISCONN),
    ("ENOTCONN", libc::ENOTCONN),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("EHOSTUNREACH", libc::EHOSTUNREACH),
    ("EALREADY", libc::EALREADY),
    ("EINPROGRESS", libc::EINPROGRESS),
];

/// `EPIPE` for 32, or the number itself when unknown.
pub fn errno_name(e: i32) -> String {
    ERRNOS
        .iter()
        .find(|(_, v)| *v == e)
        .map_or_else(|| format!("errno {e}"), |(n, _)| (*n).to_string())
}

/// The errno a name stands for.
pub fn errno_value(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

const CONSTANTS: &[(&str, i64)] = &[
    ("AF_INET", libc::AF_INET as i64),
    ("SOCK_STREAM", libc::SOCK_STREAM as i64),
    ("IPPROTO_TCP", libc::IPPROTO_TCP as i64),
    ("SOL_TCP", libc::SOL_TCP as i64),
    ("SOL_SOCKET", libc::SOL_SOCKET as i64),
    ("SO_REUSEADDR", libc::SO_REUSEADDR as i64),
    ("SO_REUSEPORT", libc::SO_REUSEPORT as i64),
    ("SO_LINGER", libc::SO_LINGER as i64),
    ("SO_KEEPALIVE", libc::SO_KEEPALIVE as i64),
    ("SO_RCVBUF", libc::SO_RCVBUF as i64),
    ("SO_SNDBUF", libc::SO_SNDBUF as i64),
    ("TCP_NODELAY", libc::TCP_NODELAY as i64),
    ("TCP_KEEPIDLE", libc::TCP_KEEPIDLE as i64),
    ("TCP_KEEPINTVL", libc::TCP_KEEPINTVL as i64),
    ("TCP_KEEPCNT", libc::TCP_KEEPCNT as i64),
    ("TCP_USER_TIMEOUT", libc::TCP_USER_TIMEOUT as i64),
    ("TCP_LINGER2", libc::TCP_LINGER2 as i64),
    ("F_GETFL", libc::F_GETFL as i64),
    ("F_SETFL", libc::F_SETFL as i64),
    ("O_RDWR", libc::O_RDWR as i64),
    ("O_NONBLOCK", libc::O_NONBLOCK as i64),
    ("SHUT_RD", libc::SHUT_RD as i64),
    ("SHUT_WR", libc::SHUT_WR as i64),
    ("SHUT_RDWR", libc::SHUT_RDWR as i64),
    ("MSG_DONTWAIT", libc::MSG_DONTWAIT as i64),
    ("MSG_PEEK", libc::MSG_PEEK as i64),
];

fn int(call: &Syscall, i: usize) -> Result<i64, String> {
    match call.args.get(i) {
        Some(Arg::Int(n)) => Ok(*n),
        Some(Arg::Names(names)) => {
            let mut v = 0;
            for n in names {
                let Some((_, x)) = CONSTANTS.iter().find(|(k, _)| k == n) else {
                    return Err(format!("unsupported constant {n} in {}()", call.name));
                };
                v |= x;
            }
            Ok(v)
        }
        Some(other) => Err(format!(
            "argument {} of {}() should be a number or a constant, not {other:?}",
            i + 1,
            call.name
        )),
        None => Err(format!(
            "{}() needs at least {} arguments",
            call.name,
            i + 1
        )),
    }
}

fn arity(call: &Syscall, n: usize) -> Result<(), String> {
    if call.args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "{}() takes {n} arguments, the script gives {}",
            call.name,
            call.args.len()
        ))
    }
}

fn fd(call: &Syscall, fds: &FdTable) -> Result<i32, String> {
    let n = int(call, 0)?;
    fds.lock()
        .map_err(|_| "the descriptor table is poisoned".to_string())?
        .get(&n)
        .copied()
        .ok_or_else(|| format!("{}(): the script never opened descriptor {n}", call.name))
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; zero is a valid value for every field.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

fn outcome(ret: i64) -> Outcome {
    if ret < 0 {
        Outcome {
            ret: -1,
            errno: std::io::Error::last_os_error().raw_os_error(),
        }
    } else {
        Outcome { ret, errno: None }
    }
}

/// Whether the call makes a new descriptor, whose script number is its expected result.
fn returns_fd(name: &str) -> bool {
    matches!(name, "socket" | "accept")
}

/// Run one call. `Err` when the script asks for something this runner cannot do.
pub fn call(c: &Syscall, fds: &FdTable) -> Result<Outcome, String> {
    let sa_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY (every arm): plain system calls on descriptors the script opened, with buffers
    // and socket addresses owned by this function.
    let out = unsafe {
        match c.name.as_str() {
            "socket" => {
                arity(c, 3)?;
                let family = match c.args[0] {
                    Arg::Ellipsis => libc::AF_INET as i64,
                    _ => int(c, 0)?,
                };
                if family != libc::AF_INET as i64 {
                    return Err("only AF_INET sockets are supported".into());
                }
                outcome(libc::socket(family as i32, int(c, 1)? as i32, int(c, 2)? as i32) as i64)
            }
            "bind" => {
                arity(c, 3)?;
                let sa = sockaddr(SocketAddrV4::new(LOCAL_IP, PORT));
                outcome(libc::bind(
                    fd(c, fds)?,
                    (&sa as *const libc::sockaddr_in).cast(),
                    sa_len,
                ) as i64)
            }
            "connect" => {
                arity(c, 3)?;
                let sa = sockaddr(SocketAddrV4::new(REMOTE_IP, PORT));
                outcome(libc::connect(
                    fd(c, fds)?,
                    (&sa as *const libc::sockaddr_in).cast(),
                    sa_len,
                ) as i64)
            }
            "listen" => {
                arity(c, 2)?;
                outcome(libc::listen(fd(c, fds)?, int(c, 1)? as i32) as i64)
            }
            "accept" => {
                arity(c, 3)?;
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                let mut len = sa_len;
                outcome(libc::accept(
                    fd(c, fds)?,
                    (&mut sa as *mut libc::sockaddr_in).cast(),
                    &mut len,
                ) as i64)
            }
            "read" | "recv" => {
                let n = if c.name == "read" {
                    arity(c, 3)?;
                    3
                } else {
                    arity(c, 4)?;
                    4
                };
                let len = int(c, 2)?.clamp(0, 1 << 24) as usize;
                let mut buf = vec![0u8; len];
                let f = fd(c, fds)?;
                outcome(if n == 3 {
                    libc::read(f, buf.as_mut_ptr().cast(), len) as i64
                } else {
                    libc::recv(f, buf.as_mut_ptr().cast(), len, int(c, 3)? as i32) as i64
                })
            }
            "write" | "send" => {
                let n = if c.name == "write" {
                    arity(c, 3)?;
                    3
                } else {
                    arity(c, 4)?;
                    4
                };
                let len = int(c, 2)?.clamp(0, 1 << 24) as usize;
                let buf = vec![0u8; len];
                let f = fd(c, fds)?;
                // write(2) on a socket is send(2) without flags; MSG_NOSIGNAL turns the
                // SIGPIPE of a shut socket into the EPIPE a script expects.
                let flags = if n == 3 { 0 } else { int(c, 3)? as i32 };
                outcome(libc::send(f, buf.as_ptr().cast(), len, flags | libc::MSG_NOSIGNAL) as i64)
            }
            "shutdown" => {
                arity(c, 2)?;
                outcome(libc::shutdown(fd(c, fds)?, int(c, 1)? as i32) as i64)
            }
            "close" => {
                arity(c, 1)?;
                let f = fd(c, fds)?;
                let o = outcome(libc::close(f) as i64);
                if o.errno.is_none() {
                    fds.lock()
                        .map_err(|_| "poisoned".to_string())?
                        .remove(&int(c, 0)?);
                }
                o
            }
            "fcntl" => {
                let f = fd(c, fds)?;
                let cmd = int(c, 1)?;
                if cmd == libc::F_GETFL as i64 {
                    arity(c, 2)?;
                    outcome(libc::fcntl(f, libc::F_GETFL) as i64)
                } else if cmd == libc::F_SETFL as i64 {
                    arity(c, 3)?;
                    outcome(libc::fcntl(f, libc::F_SETFL, int(c, 2)? as i32) as i64)
                } else {
                    return Err("fcntl() supports F_GETFL and F_SETFL only".into());
                }
            }
            "setsockopt" => {
                arity(c, 5)?;
                let f = fd(c, fds)?;
                let level = int(c, 1)? as i32;
                let name = int(c, 2)? as i32;
                let len = int(c, 4)? as libc::socklen_t;
                match &c.args[3] {
                    Arg::IntPtr(v) => {
                        let v = *v as libc::c_int;
                        outcome(libc::setsockopt(
                            f,
                            level,
                            name,
                            (&v as *const libc::c_int).cast(),
                            len,
                        ) as i64)
                    }
                    Arg::Struct(fields) => {
                        let get = |names: &[&str]| {
                            fields
                                .iter()
                                .find(|(k, _)| names.contains(&k.as_str()))
                                .map(|(_, v)| *v)
                        };
                        let (Some(on), Some(secs)) =
                            (get(&["onoff", "l_onoff"]), get(&["linger", "l_linger"]))
                        else {
                            return Err("setsockopt() takes a struct only for SO_LINGER: {onoff=N, linger=N}".into());
                        };
                        let l = libc::linger {
                            l_onoff: on as i32,
                            l_linger: secs as i32,
                        };
                        outcome(libc::setsockopt(
                            f,
                            level,
                            name,
                            (&l as *const libc::linger).cast(),
                            len,
                        ) as i64)
                    }
                    other => return Err(format!("unsupported setsockopt() value {other:?}")),
                }
            }
            other => return Err(format!("unsupported system call {other}()")),
        }
    };
    if returns_fd(&c.name) && out.errno.is_none() && c.ret >= 0 {
        fds.lock()
            .map_err(|_| "poisoned".to_string())?
            .insert(c.ret, out.ret as i32);
    }
    Ok(out)
}

/// Whether what happened is what the script expected; the message says what differed.
pub fn check(c: &Syscall, got: Outcome) -> Result<(), String> {
    let expected = match &c.errno {
        Some(e) => {
            let Some(want) = errno_value(e) else {
                return Err(format!("unknown errno {e}"));
            };
            if got.errno == Some(want) {
                return Ok(());
            }
            format!("-1 {e}")
        }
        None => {
            if got.errno.is_none() && (got.ret == c.ret || (returns_fd(&c.name) && c.ret >= 0)) {
                return Ok(());
            }
            c.ret.to_string()
        }
    };
    Err(format!("expected {}(...) = {expected}, got {got}", c.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::script::{What, parse};

    fn one(text: &str) -> Syscall {
        match parse("t.pkt", text).unwrap().events.remove(0).what {
            What::Syscall(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_script_descriptors_and_checks_results() {
        let fds = FdTable::default();
        let s = one("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n");
        let got = call(&s, &fds).unwrap();
        assert!(check(&s, got).is_ok());
        let live = *fds.lock().unwrap().get(&3).unwrap();
        assert_eq!(i64::from(live), got.ret);
        // A write on an unconnected socket: EPIPE expected, a byte count is wrong.
        let w = one("0 write(3, ..., 10) = -1 EPIPE (Broken pipe)\n");
        let got = call(&w, &fds).unwrap();
        assert!(check(&w, got).is_ok(), "{got}");
        let w2 = one("0 write(3, ..., 10) = 10\n");
        let err = check(&w2, got).unwrap_err();
        assert_eq!(
            err,
            "expected write(...) = 10, got -1 EPIPE (Broken pipe (os error 32))"
        );
        let c = one("0 close(3) = 0\n");
        assert!(check(&c, call(&c, &fds).unwrap()).is_ok());
        assert!(fds.lock().unwrap().is_empty());
        let bad = one("0 close(7) = 0\n");
        assert!(
            call(&bad, &fds)
                .unwrap_err()
                .contains("never opened descriptor 7")
        );
        let odd = one("0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0\n");
        assert!(
            call(&odd, &fds)
                .unwrap_err()
                .contains("unsupported system call getsockopt()")
        );
    }
}
