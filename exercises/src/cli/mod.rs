//! The runner's subcommands, one file each, and what they share (`runner`).

pub mod capture;
pub mod diagram;
pub mod doctor;
pub mod ladder;
pub mod lessons;
pub mod model;
pub mod model_kernel;
pub mod peer;
pub mod runner;
pub mod snapshot;
pub mod trace;
pub mod watch;
pub mod watch_file;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use tcplab_core::Vocabulary;

/// An error as the runner and the lesson binaries print it: the whole chain, then the way
/// out in their own flags where core reported a case it leaves to the faces to word
/// (core names no flag).
pub fn describe_error(e: &anyhow::Error) -> String {
    let remedy = e
        .chain()
        .find_map(|c| c.downcast_ref::<tcplab_core::Error>())
        .and_then(|c| match c {
            tcplab_core::Error::TracepointNeedsRoot { .. } => Some("use --backend poll"),
            tcplab_core::Error::SockDiagUnavailable(_) => Some("try --method proc"),
            _ => None,
        });
    match remedy {
        Some(r) => format!("{e:#}; {r}"),
        None => format!("{e:#}"),
    }
}

/// clap's parser for one of core's named values (`--backend`, `--method`, `--family`): the
/// names come from core, are listed in `--help` and in errors, and core's aliases work too.
pub fn one_of<T: Vocabulary + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::all()
        .iter()
        .map(|v| PossibleValue::new(v.name()).aliases(v.aliases().iter().copied()));
    PossibleValuesParser::new(values).map(|s| {
        s.parse::<T>()
            .expect("core parses every name it lists (tested in core::vocab)")
    })
}
