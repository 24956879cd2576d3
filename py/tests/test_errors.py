"""Every bad input raises the documented exception with a useful message, never a panic."""

from __future__ import annotations

from typing import Any

import pytest
import tcplab


def no_panic(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    assert "PanicException" not in type(excinfo.value).__name__


@pytest.mark.parametrize("port", [-1, 65536, 10**30, -(10**30), [80, 70000], (1, -5)])
def test_ports_out_of_range(port: Any) -> None:
    for fn in (tcplab.snapshot, tcplab.trace):
        with pytest.raises(ValueError, match=r"outside 0\.\.65535") as e:
            fn(port=port)
        no_panic(e)


@pytest.mark.parametrize(
    "port", ["80", 1.5, True, [None], ["80"], {"a": "b"}, object(), b"80", [1.0]]
)
def test_ports_wrong_type(port: Any) -> None:
    for fn in (tcplab.snapshot, tcplab.trace):
        with pytest.raises(TypeError, match="port must be") as e:
            fn(port=port)
        no_panic(e)


@pytest.mark.parametrize("port", [[], ()])
def test_empty_port_list(port: Any) -> None:
    with pytest.raises(ValueError, match="pass None"):
        tcplab.snapshot(port=port)


@pytest.mark.parametrize("state", ["half-open", "", "TIMEWAIT2", ["ESTAB", "nope"]])
def test_unknown_state_lists_valid(state: Any) -> None:
    with pytest.raises(ValueError, match="unknown TCP state") as e:
        tcplab.snapshot(state=state)
    for name in tcplab.states():
        assert name in str(e.value)


@pytest.mark.parametrize("state", [5, [5], [None], b"LISTEN", object(), 1.0])
def test_state_wrong_type(state: Any) -> None:
    with pytest.raises(TypeError, match=r"state must be|a state must be") as e:
        tcplab.snapshot(state=state)
    no_panic(e)


def test_state_empty_list() -> None:
    with pytest.raises(ValueError, match="pass None"):
        tcplab.snapshot(state=[])


@pytest.mark.parametrize("pids", [1, "yes", [], 0.0])
def test_pids_must_be_bool(pids: Any) -> None:
    with pytest.raises(TypeError, match="pids must be True or False"):
        tcplab.snapshot(pids=pids)


def test_method() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        tcplab.snapshot(method="ss")
    with pytest.raises(TypeError):
        tcplab.snapshot(method=1)  # type: ignore[arg-type]


def test_state_name() -> None:
    assert tcplab.state_name("estab") == "ESTABLISHED"
    with pytest.raises(ValueError, match="valid names"):
        tcplab.state_name("WAITING")
    with pytest.raises(TypeError):
        tcplab.state_name(6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        ({"backend": "ebpf"}, ValueError, "unknown backend"),
        ({"backend": 1}, TypeError, "backend must be a str"),
        ({"interval_ms": 0}, ValueError, "outside"),
        ({"interval_ms": float("nan")}, ValueError, "outside"),
        ({"interval_ms": "1"}, TypeError, "must be a number"),
    ],
)
def test_trace_arguments(kwargs: dict[str, Any], exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc, match=msg):
        tcplab.trace(port=1, **kwargs)


def test_trace_misuse() -> None:
    tr = tcplab.trace(port=1, backend="poll")
    with pytest.raises(tcplab.TcplabError, match="never started"):
        tr.stop()
    with pytest.raises(tcplab.TcplabError, match="never started"):
        tr.timeline  # noqa: B018
    with tr:
        with pytest.raises(tcplab.TcplabError, match="still running"):
            tr.timeline  # noqa: B018
        with pytest.raises(tcplab.TcplabError, match="already started"):
            tr.start()
    assert len(tr.timeline) == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "msg"),
    [
        (("99",), {}, ValueError, r"unknown lesson .*03 \(close-wait\)"),
        (("nope",), {}, ValueError, "lessons are: 01"),
        ((0,), {}, ValueError, "lessons are"),
        ((-3,), {}, ValueError, "lessons are"),
        ((10**30,), {}, ValueError, "lessons are"),
        ((None,), {}, TypeError, "lesson must be a str"),
        ((3.0,), {}, TypeError, "lesson must be a str"),
        (("03",), {"variant": "broken"}, ValueError, r"no variant 'broken'|no variant \"broken\""),
        (("03",), {"variant": 1}, TypeError, "variant must be a str"),
        (("03",), {"connections": 0}, ValueError, "outside 1..20000"),
        (("03",), {"connections": -1}, ValueError, "outside"),
        (("03",), {"connections": 10**30}, ValueError, "outside"),
        (("03",), {"connections": 2.5}, TypeError, "connections must be an int"),
        (("03",), {"connections": True}, TypeError, "connections must be an int"),
        (("03",), {"connections": "5"}, TypeError, "connections must be an int"),
        (("03",), {"hold": -1}, ValueError, "outside 0..3600"),
        (("03",), {"hold": float("nan")}, ValueError, "outside"),
        (("03",), {"hold": "1"}, TypeError, "hold must be a number"),
        (("03",), {"timeout": 0}, ValueError, "outside"),
        (("03",), {"backend": "ebpf"}, ValueError, "unknown backend"),
        (("03",), {"backend": 1}, TypeError, "backend must be a str"),
        (("03",), {"churn_secs": 1}, ValueError, "churn_secs is for lessons 05 and 09"),
        (("05",), {"churn_secs": 11}, ValueError, "outside"),
        (("05",), {"churn_secs": "1"}, TypeError, "churn_secs must be a number"),
        (("05",), {"churn_rate": 100}, ValueError, "churn_rate needs churn_secs"),
        (("05",), {"churn_secs": 1, "churn_rate": 0}, ValueError, "outside"),
    ],
)
def test_run_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception], msg: str
) -> None:
    with pytest.raises(exc, match=msg) as e:
        tcplab.run(*args, **kwargs)
    no_panic(e)


def test_unknown_variant_lists_binaries() -> None:
    with pytest.raises(ValueError) as e:
        tcplab.run("03", variant="broken")
    assert "03-close-wait-leak" in str(e.value) and "03-close-wait-fixed" in str(e.value)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"events": 5}', "{}"])
def test_timeline_from_bad_json(text: str) -> None:
    if text == "":
        assert len(tcplab.Timeline.from_json(text)) == 0
        return
    with pytest.raises(ValueError, match="not a timeline"):
        tcplab.Timeline.from_json(text)


def test_timeline_from_json_type() -> None:
    with pytest.raises(TypeError):
        tcplab.Timeline.from_json(None)  # type: ignore[arg-type]


def test_error_hierarchy() -> None:
    assert issubclass(tcplab.TcplabError, Exception)
    assert not issubclass(tcplab.TcplabError, ValueError)


def test_variants_resolve_from_the_catalog_on_every_paired_lesson() -> None:
    # The same resolution as `tcplab run --variant`: 05 and 06 have no "-leak"/"-fixed" names.
    for lesson in ("05", "06", "09"):
        _, leak, expect_leak = tcplab._native._resolve(lesson, "leak")
        _, fixed, expect_clean = tcplab._native._resolve(lesson, "fixed")
        assert (expect_leak, expect_clean) == ("leak", "clean")
        assert leak != fixed and leak.startswith(lesson) and fixed.startswith(lesson)
    with pytest.raises(ValueError, match="leak, fixed, student") as e:
        tcplab.run("06", variant="reuseaddr")
    no_panic(e)
    with pytest.raises(ValueError, match="cargo lab start 03") as e:
        tcplab.run("03", variant="student", build=False)
    no_panic(e)
