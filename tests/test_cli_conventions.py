"""Command-line conventions: -v/-q configure logging, --help shows defaults, the run's messages
go through the losslines logger."""

from __future__ import annotations

import logging
import sys

import pytest

from losslines.cli import build_parser, main


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger("losslines")
    state = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = state[0], state[1], state[2]


def _run(tmp_path, tiny_config, toml_dumps, *flags, capsys):
    from losslines.runner.config import config_to_dict

    tmp_path.mkdir()
    cfg = tiny_config(tmp_path, "threads=1", "train.steps=4")
    config = tmp_path / "run.toml"
    config.write_text(toml_dumps(config_to_dict(cfg)))
    code = main([*flags, "run", str(config), "-q", "--set", "measure.strategy='auto'"])
    return code, capsys.readouterr()


def test_quiet_prints_no_log_line_and_verbose_prints_the_engine_s(tmp_path, tiny_config, toml_dumps, capsys):
    code, out = _run(tmp_path / "a", tiny_config, toml_dumps, capsys=capsys)
    assert code == 0 and "losslines: strategy auto chose" in out.err  # the run's INFO line
    code, out = _run(tmp_path / "b", tiny_config, toml_dumps, "-q", capsys=capsys)
    assert code == 0 and out.err == "" and "complete:" in out.out
    code, out = _run(tmp_path / "c", tiny_config, toml_dumps, "-vv", capsys=capsys)
    assert code == 0 and "losslines: strategy auto: chose" in out.err  # the engine's DEBUG line


def test_help_shows_defaults():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    text = sub["analyze"].format_help()
    assert "random batches per size and line (default: 16)" in text
    assert "seed of the random batches (default: 0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_cli_log_lines_go_to_the_current_stderr_after_it_was_replaced_and_closed(monkeypatch):
    """Regression: the CLI's log handler kept the sys.stderr of its first call; after a caller
    (pytest's capsys, a notebook) replaced and closed that stream, every later log line printed a
    '--- Logging error --- ... I/O operation on closed file' traceback instead."""
    import io
    import logging

    from losslines.cli import configure_logging

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(0, False)
    logging.getLogger("losslines.run").info("one")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("losslines.run").info("two")
    assert second.getvalue() == "losslines: two\n"
