//! `check --watch`: wait until the student's file changes. File-system events come from
//! `notify` (inotify on Linux); where a file system sends none (WSL's 9p, Docker Desktop's
//! mounts, some network shares) the file's content is also compared twice a second, so a
//! save is never missed. Editors that save by writing a new file and renaming it over the old
//! one are covered because the parent folder is watched, not the file's inode.
//!
//! Left out on purpose: debouncing beyond "wait for the content to settle": a change is one
//! check.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// How often the content is compared when no event came.
const POLL: Duration = Duration::from_millis(500);

pub struct FileWatch {
    file: PathBuf,
    last: Option<Vec<u8>>,
    events: Option<(
        notify::RecommendedWatcher,
        Receiver<notify::Result<notify::Event>>,
    )>,
}

impl FileWatch {
    /// Watch `file` (its folder, for events) from its content now.
    pub fn new(file: &Path) -> Result<FileWatch> {
        let (tx, rx) = channel();
        // Events when the platform gives them; polling alone when it refuses.
        let events = notify::recommended_watcher(tx).ok().and_then(|mut w| {
            let dir = file.parent()?;
            w.watch(dir, RecursiveMode::NonRecursive).ok()?;
            Some((w, rx))
        });
        Ok(FileWatch {
            file: file.to_path_buf(),
            last: std::fs::read(file).ok(),
            events,
        })
    }

    /// How changes are noticed, for the narration.
    pub fn how(&self) -> &'static str {
        if self.events.is_some() {
            "file events, and a content check twice a second"
        } else {
            "a content check twice a second"
        }
    }

    /// Block until the file's content differs from the last content seen (Ctrl-C ends the
    /// process). Returns once the new content has stayed the same for a moment, so a save
    /// written in several pieces is checked once.
    pub fn wait_for_change(&mut self) -> Result<()> {
        loop {
            match &self.events {
                Some((_, rx)) => match rx.recv_timeout(POLL) {
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
                },
                None => std::thread::sleep(POLL),
            }
            let now = std::fs::read(&self.file).ok();
            if now != self.last && now.is_some() {
                std::thread::sleep(Duration::from_millis(100));
                let settled = std::fs::read(&self.file)
                    .with_context(|| format!("reading {}", self.file.display()))?;
                if let Some((_, rx)) = &self.events {
                    while rx.try_recv().is_ok() {}
                }
                self.last = Some(settled);
                return Ok(());
            }
        }
    }
}
