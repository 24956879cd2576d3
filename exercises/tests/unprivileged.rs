//! Every lesson binary, run as an unprivileged user (uid 65534 through `setpriv`), must give
//! the verdict the catalog expects, observing through sock_diag polling instead of the
//! tracepoint. Students and instructors mostly have no root; this path is tested, not assumed.

mod common;

use tcplab_exercises::catalog::Catalog;

#[test]
fn every_binary_gives_its_verdict_without_root() {
    for name in Catalog::builtin().binary_names() {
        // Checks the verdict against the catalog and that no tracepoint was used.
        if common::run_unprivileged(name, &[]).is_none() {
            // Not root: the catalog test already runs every binary as this unprivileged user.
            return;
        }
    }
}
