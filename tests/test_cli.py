from __future__ import annotations

import json
import subprocess
import sys

import pytest

from laqcore import cli


def test_help_lists_registered_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "problem" in out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: laqcore" in capsys.readouterr().err


def test_every_registered_module_exposes_add_parser():
    import importlib

    for name in cli.SUBCOMMAND_MODULES:
        assert callable(importlib.import_module(name).add_parser)


def test_problem_command_prints_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path))
    assert cli.main(["problem", "--dataset", "digits", "--workers", "4"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dim"] == 650 and info["workers"] == 4 and len(info["smoothness"]) == 4
    assert 0 < info["f_star"] < 2.31


def test_user_errors_are_one_line_messages(capsys, tmp_path):
    assert cli.main(["problem", "--dataset", f"libsvm:{tmp_path}/missing.svm"]) == 2
    err = capsys.readouterr().err
    assert "missing.svm" in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "laqcore", "--version"], capture_output=True, text=True, check=True
    )
    assert res.stdout.startswith("laqcore ")
