from __future__ import annotations

import logging
from importlib.metadata import EntryPoint

import pytest

from dask_controller import cli, plugins


def test_run_arguments() -> None:
    args = cli.build_parser().parse_args(["run", "-n", "a", "-n", "b", "--peering", "p"])
    assert args.namespace == ["a", "b"]
    assert args.peering == "p"
    assert not args.all_namespaces
    args = cli.build_parser().parse_args(["run", "--all-namespaces", "--liveness", "http://x/"])
    assert args.all_namespaces
    assert args.liveness == "http://x/"
    assert args.peering is None


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "-n", "a", "-A"])


def test_run_without_scope_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run"]) == 2
    assert "--namespace" in capsys.readouterr().err


def test_handlers_register_with_kopf() -> None:
    import kopf

    from dask_controller import handlers

    registry = kopf.get_default_registry()
    ids = {h.id for h in registry._spawning.get_all_handlers()}
    assert any("cluster_loop" in i for i in ids)
    assert any("worker_group_loop" in i for i in ids)
    assert handlers.RESYNC_SECONDS <= 30


def test_bad_plugin_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = EntryPoint("good", "json", plugins.GROUP)
    bad = EntryPoint("bad", "no_such_module_for_dask_operator", plugins.GROUP)
    with caplog.at_level(logging.INFO, logger="dask_controller.plugins"):
        loaded, failed = plugins.load_plugins([bad, good])
    assert loaded == ["good"]
    assert "ModuleNotFoundError" in failed["bad"]
    assert "'bad'" in caplog.text
    assert "skipped" in caplog.text


def test_discover_finds_nothing_by_default() -> None:
    assert isinstance(plugins.discover(), list)


def test_peering_object_namespaces() -> None:
    from dask_controller.handlers import Peering

    assert Peering("p", clusterwide=True).object_namespaces() == [None]
    assert Peering("p", False, ("team-a", "team-*", "b")).object_namespaces() == ["team-a", "b"]


def test_peering_replicas_draw_distinct_priorities(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf pauses every replica that ties on priority: with --peering and no --priority each
    process draws its own; an explicit --priority is kept."""
    import kopf

    from dask_controller import handlers

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(kopf, "run", lambda **kw: calls.append(kw))
    monkeypatch.setattr(handlers, "configure", lambda *a, **kw: None)
    monkeypatch.setattr(plugins, "load_plugins", list)
    for _ in range(3):
        assert cli.main(["run", "-A", "--peering", "p"]) == 0
    assert cli.main(["run", "-A", "--peering", "p", "--priority", "7"]) == 0
    assert cli.main(["run", "-A"]) == 0
    drawn = [c["priority"] for c in calls[:3]]
    assert all(isinstance(p, int) and p > 0 for p in drawn)
    assert len(set(drawn)) == 3
    assert calls[3]["priority"] == 7
    assert calls[4]["priority"] is None
    assert calls[4]["standalone"] is True
