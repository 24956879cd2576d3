"""tcplab.lessons() and tcplab.run(): lesson binaries in a child process, graded by the kernel."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import tcplab


def test_catalog() -> None:
    ls = tcplab.lessons()
    # One lesson per numbered chapter of the book, numbered from 01 without a gap.
    book = Path(__file__).resolve().parents[2] / "book" / "src"
    chapters = sorted(p.name[:2] for p in book.glob("[0-9][0-9]-*.md"))
    assert len(chapters) >= 11
    assert [x["id"] for x in ls] == chapters == [f"{i:02}" for i in range(1, len(chapters) + 1)]
    l3 = ls[2]
    assert l3["slug"] == "close-wait"
    assert l3["hints"] and l3["title"]
    assert {b["name"]: b["expect"] for b in l3["binary"]} == {
        "03-close-wait-leak": "leak",
        "03-close-wait-fixed": "clean",
    }


def test_run_leak() -> None:
    r = tcplab.run("03", variant="leak", connections=5)
    assert r.binary == "03-close-wait-leak"
    assert r.verdict == "leak" and r.expected == "leak" and r.passed
    assert r.observed["server"]["CLOSE_WAIT"] == 5
    assert r.observed["client"]["FIN_WAIT2"] == 5
    assert r.report["lesson"] == "03" and r.report["server_port"] == r.server_port
    assert set(r.report) >= {
        "lesson",
        "binary",
        "backend",
        "server_port",
        "verdict",
        "expected",
        "observed",
        "facts",
        "timeline",
    }
    assert isinstance(r.timeline, tcplab.Timeline)
    assert r.facts["connections"] == 5
    assert not r.alive
    # The leak ended with the child: nothing left in CLOSE_WAIT on its port.
    assert len(tcplab.snapshot(port=r.server_port, state="close-wait")) == 0
    assert "leak" in r._repr_html_() and "CLOSE_WAIT" in r._repr_html_()


def test_run_fixed_by_full_name_and_slug() -> None:
    r = tcplab.run("03-close-wait-fixed", connections=3)
    assert (r.binary, r.verdict, r.passed) == ("03-close-wait-fixed", "clean", True)
    r2 = tcplab.run("close-wait", variant="fixed", connections=2)
    assert r2.verdict == "clean"
    r3 = tcplab.run(3, variant="03-close-wait-leak", connections=2)
    assert r3.verdict == "leak"


def test_default_is_the_student_binary() -> None:
    r = tcplab.run("3", connections=2)
    assert r.binary == "03-close-wait-leak"


def test_hold_keeps_sockets_until_stop() -> None:
    r = tcplab.run("03", variant="leak", connections=3, hold=30)
    try:
        assert r.alive
        assert tcplab.snapshot(port=r.server_port, state="close-wait").counts() == {"CLOSE_WAIT": 3}
    finally:
        r.stop()
    assert not r.alive
    assert tcplab.wait_for(
        lambda: len(tcplab.snapshot(port=r.server_port, state="close-wait")) == 0
    )


def test_missing_binaries_say_how_to_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tcplab._lessons as lessons_mod

    monkeypatch.setattr(lessons_mod, "bin_dirs", lambda: [tmp_path])
    with pytest.raises(tcplab.TcplabError, match="cargo build --release") as e:
        tcplab.run("03", variant="leak", build=False)
    assert "TCPLAB_BIN_DIR" in str(e.value)


def test_in_a_checkout_run_builds_from_the_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tcplab.checkout(Path(__file__).parent)
    if root is None:
        pytest.skip("the tests run from an installed copy, outside any tcplab checkout")
    monkeypatch.chdir(root / "notebooks")
    assert tcplab.checkout() == root
    import tcplab._lessons as lessons_mod

    # No installed binaries at all: what runs can only be what cargo just built.
    monkeypatch.setattr(lessons_mod, "bin_dirs", lambda: [tmp_path])
    r = tcplab.run("03", variant="fixed", connections=2, build=True)
    assert r.binary == "03-close-wait-fixed" and r.verdict == "clean"
    # Outside a checkout, build=True says why it cannot.
    monkeypatch.chdir(tmp_path)
    assert tcplab.checkout() is None
    with pytest.raises(tcplab.TcplabError, match="needs a tcplab checkout"):
        tcplab.run("03", variant="fixed", build=True)
    with pytest.raises(ValueError, match="cargo lab start 03"):
        tcplab.run("03", variant="student")


def test_bin_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TCPLAB_BIN_DIR", str(tmp_path))
    dirs = tcplab.bin_dirs()
    assert dirs[0] == tmp_path
    assert dirs[1].name == "bin" and dirs[1].parent.name == "tcplab"
    assert [d.name for d in dirs[2:]] == ["release", "debug"]


def write_script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_child_timeout_is_killed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_script(tmp_path / "03-close-wait-leak", "exec sleep 30\n")
    monkeypatch.setenv("TCPLAB_BIN_DIR", str(tmp_path))
    t0 = time.monotonic()
    with pytest.raises(tcplab.TcplabError, match=r"did not report within 0\.5 s"):
        tcplab.run("03", variant="leak", timeout=0.5)
    assert time.monotonic() - t0 < 10


def test_child_failure_shows_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_script(tmp_path / "03-close-wait-leak", "echo 'boom: no port' >&2\nexit 3\n")
    monkeypatch.setenv("TCPLAB_BIN_DIR", str(tmp_path))
    with pytest.raises(tcplab.TcplabError, match=r"exited with code 3.*boom: no port"):
        tcplab.run("03", variant="leak")


def test_child_garbage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_script(tmp_path / "03-close-wait-leak", "echo hello\n")
    monkeypatch.setenv("TCPLAB_BIN_DIR", str(tmp_path))
    with pytest.raises(tcplab.TcplabError, match="not a JSON report"):
        tcplab.run("03", variant="leak")


def test_binaries_shipped_in_package() -> None:
    pkg_bin = Path(tcplab.__file__).parent / "bin"
    if not pkg_bin.is_dir():
        pytest.skip("package built without py/build_bins.py (binaries found in target/ instead)")
    assert os.access(pkg_bin / "03-close-wait-leak", os.X_OK)


def test_churn_at_a_chosen_rate() -> None:
    r = tcplab.run("05-server-closes-first", connections=20, churn_secs=1, churn_rate=500)
    assert r.passed
    f = r.facts
    assert f["churn_target_rate"] == 500 and f["churn_closer"] == "server"
    # Paced: at most the rate over the time it ran (connections due at k / rate), and not far
    # below it.
    assert 250 <= f["churn_connections"] <= f["churn_secs"] * 500 + 2, f
    last = f["churn_samples"][-1]
    assert last["client_time_wait"] == 0
    assert last["server_time_wait"] >= 0.9 * last["connections"], f


def test_facts_table_keeps_types_and_puts_the_verdict_first() -> None:
    pytest.importorskip("pandas")
    leak = tcplab.run("07", variant="leak", build=False)
    fixed = tcplab.run("07", variant="fixed", build=False)
    t = tcplab.facts_table(leak, fixed)
    assert list(t.columns) == [leak.binary, fixed.binary]
    assert t.index[0] == "verdict" and list(t.iloc[0]) == ["leak", "clean"]
    sent = t.loc["bytes_sent"]
    assert all(type(v) is int for v in sent), sent  # never 8388608.0
    assert t.loc["client_error", fixed.binary] is None  # never NaN
