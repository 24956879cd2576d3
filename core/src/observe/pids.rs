//! Owner pids by inode. PLACEHOLDER: being written.
use super::SocketRow;
use crate::error::Result;

pub fn fill(_rows: &mut [SocketRow]) -> Result<()> {
    Ok(())
}
