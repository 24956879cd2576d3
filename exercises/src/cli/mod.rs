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
