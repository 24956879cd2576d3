//! Which processes own a socket, found the way `ss -p` and `lsof` find them: every open file
//! descriptor is a symlink under /proc/PID/fd, and a socket's link reads `socket:[INODE]`,
//! the same inode sock_diag and /proc/net/tcp report.
//!
//! This is how lesson 11 answers "who holds these CLOSE_WAIT sockets?". TIME_WAIT and
//! request mini-sockets have inode 0: no process holds them, so their list is empty.
//!
//! Left out on purpose: thread ids (/proc/PID/task/*/fd share the process's table), process
//! names and fd numbers, and other users' processes when not root (their fd directories are
//! unreadable; they are skipped, as `ss -p` skips them).

use std::collections::{HashMap, HashSet};
use std::fs;

use super::SocketRow;
use crate::error::{Error, Result};

/// Set `pids: Some(..)` on every row: the sorted pids whose fd table holds the row's inode.
pub fn fill(rows: &mut [SocketRow]) -> Result<()> {
    let wanted: HashSet<u64> = rows.iter().map(|r| r.inode).filter(|&i| i != 0).collect();
    let owners = if wanted.is_empty() {
        HashMap::new()
    } else {
        owners_of(&wanted)?
    };
    for row in rows.iter_mut() {
        row.pids = Some(owners.get(&row.inode).cloned().unwrap_or_default());
    }
    Ok(())
}

/// inode -> sorted pids, for the inodes in `wanted`, from one walk over /proc/*/fd.
pub fn owners_of(wanted: &HashSet<u64>) -> Result<HashMap<u64, Vec<u32>>> {
    let mut owners: HashMap<u64, Vec<u32>> = HashMap::new();
    let proc_dir = fs::read_dir("/proc").map_err(|e| Error::io("cannot list /proc", e))?;
    let mut path = String::with_capacity(64);
    for entry in proc_dir {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        path.clear();
        path.push_str("/proc/");
        path.push_str(name.to_str().unwrap_or_default());
        path.push_str("/fd");
        // The process may have exited, or belong to another user: skip it either way.
        let Ok(fds) = fs::read_dir(&path) else {
            continue;
        };
        for fd in fds {
            let Ok(fd) = fd else { continue };
            // An fd closed between readdir and readlink is simply gone.
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            if wanted.contains(&inode) {
                let list = owners.entry(inode).or_default();
                if !list.contains(&pid) {
                    list.push(pid);
                }
            }
        }
    }
    for list in owners.values_mut() {
        list.sort_unstable();
    }
    Ok(owners)
}

/// The inode in a `socket:[12345]` link target, or `None` for any other file.
pub fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_link_targets() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[12x]"), None);
    }

    #[test]
    fn finds_our_own_listener() {
        let l = crate::sockets::loopback_listener(false).unwrap();
        let port = l.local_addr().unwrap().port();
        let mut rows = crate::observe::procfs::read(&crate::observe::Query::ports(&[port]))
            .unwrap()
            .into_iter()
            .filter(|r| r.local.port() == port)
            .collect::<Vec<_>>();
        assert_eq!(rows.len(), 1);
        assert_ne!(rows[0].inode, 0);
        let mut zero = rows[0].clone();
        zero.inode = 0;
        rows.push(zero);
        fill(&mut rows).unwrap();
        assert_eq!(rows[0].pids, Some(vec![std::process::id()]));
        assert_eq!(rows[1].pids, Some(vec![]));
    }
}
