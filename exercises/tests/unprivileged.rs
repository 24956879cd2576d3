//! Every lesson binary, run as an unprivileged user (uid 65534 through `setpriv`), must give
//! the verdict the catalog expects, observing through sock_diag polling instead of the
//! tracepoint. Students and instructors mostly have no root; this path is tested, not assumed.

mod common;

use tcplab_exercises::catalog::Catalog;
use tcplab_exercises::facts;

#[test]
fn every_binary_gives_its_verdict_without_root() {
    for name in Catalog::builtin().binary_names() {
        // Checks the verdict against the catalog and that no tracepoint was used.
        common::run_unprivileged(name, &[]);
    }
}

/// The churn phases need a private network namespace: without root it is a user + network
/// namespace, made by the lesson itself.
#[test]
fn churn_phases_work_without_root() {
    let args = ["--churn-secs", "0.5", "-n", "20"];
    let r = common::run_unprivileged("05-server-closes-first", &args);
    assert!(common::num(&r, facts::CHURN_CONNECTIONS) > 100, "{r}");
    assert_eq!(common::num(&r, facts::CHURN_FAILED), 0, "{r}");
    let r = common::run_unprivileged("09-port-exhaustion-churn", &args[..2]);
    assert!(common::num(&r, facts::CHURN_CONNECTIONS) > 100, "{r}");
    assert_eq!(r["facts"][facts::CHURN_PORT_RANGE], "32768 60999", "{r}");
}
