//! sock_diag (inet_diag) over netlink. PLACEHOLDER: being written.
use super::{Query, SocketRow};
use crate::error::{Error, Result};

pub fn dump(_query: &Query) -> Result<Vec<SocketRow>> {
    Err(Error::Netlink("not written yet".into()))
}
