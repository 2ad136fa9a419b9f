"""The ``losslines`` command: a thin layer over the library.

``losslines run CONFIG``           train, measure lines on the schedule, stream them to a store
                                   (CONFIG: a file, or a shipped config's name)
``losslines configs``              list the shipped configs
``losslines measure RECORDING``    measure the lines a run recorded (measure.mode = "record"),
                                   line-parallel under torchrun
``losslines info STORE``           a human summary of a store
``losslines verify STORE``         check a store's format, checksums and invariants (exit 1 if not)
``losslines upgrade STORE``        convert a format 1 store to format 2 (in place, or --out NEW)
``losslines analyze STORE``        the paper's metrics and figures: report.md, metrics.json, PNG/PDF
``losslines import-pickles DIR``   convert the original research code's pickles to a store

Exit codes: 0 done; 2 a user error (bad config, missing file, an output path that holds something
else, a store or checkpoint that is not one): one line on stderr; 1 an internal error (an
exception losslines did not raise as a user error, e.g. from inside torch), one line naming a file
with the traceback (``--debug`` prints it), a storage failure (a full disk, an I/O error: one
line saying how to continue), or ``verify`` finding problems; 3 a run stopped by a non-finite
value (``train.on_nonfinite = "stop"``: the line on stdout names the step and the value; the store
keeps the values and a checkpoint); 130 an interrupted run, after saving a checkpoint.
``is_user_error`` tells the two kinds of errors apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import dis
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from types import CodeType
from typing import Sequence

EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130

# Errors about paths the user named: user errors wherever they are raised (open(), fsspec, zarr).
_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
_PACKAGE = Path(__file__).resolve().parent


def _cmd_run(args: argparse.Namespace) -> int:
    from losslines.runner.config import load_config
    from losslines.runner.shipped import resolve_config

    overrides = list(args.set or [])
    if args.out is not None:
        overrides.append(f"store.path={_toml_string(args.out)}")
    if args.data_root is not None:
        overrides.append(f"data.root={_toml_string(args.data_root)}")
    if args.device is not None:
        overrides.append(f"device={_toml_string(args.device)}")
    cfg = load_config(resolve_config(args.config), overrides)
    from losslines.runner.driver import run

    result = run(cfg, resume=args.resume, progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, process 0 reports
        what = f"stopped, {result.reason} (train.on_nonfinite = 'stop')" if result.status == "nonfinite" \
            else result.status
        print(f"{what}: {result.lines} lines over {result.steps} steps in {result.wall_s:.1f} s -> {result.store_path}")
        if result.writer_stall is not None and result.threads is not None and not args.quiet:
            st = result.writer_stall
            print(f"  {result.threads}; the store writer held the run up {st.caller_s:.2f} s, "
                  f"{100 * st.fraction:.1f} % of its {st.open_s:.1f} s "
                  f"(at most {100 * st.bound:.1f} % counting its thread's {st.write_s:.2f} s)")
    return {"complete": 0, "nonfinite": EXIT_NONFINITE}.get(result.status, EXIT_INTERRUPTED)


def _cmd_measure(args: argparse.Namespace) -> int:
    from losslines.runner.measure import measure_recording

    result = measure_recording(args.recording, args.out, resume=args.resume, progress=not args.quiet,
                               device=args.device, threads=args.threads)
    if os.environ.get("RANK", "0") == "0":
        print(f"{result.status}: {result.lines} lines in {result.wall_s:.1f} s -> {result.store_path}")
    return 0 if result.status == "complete" else EXIT_INTERRUPTED


def _cmd_configs(args: argparse.Namespace) -> int:
    from losslines.runner.shipped import describe, shipped_configs, shipped_dir

    configs = shipped_configs()
    if not configs:
        print("losslines: no shipped configs found (a broken install?)", file=sys.stderr)
        return 1
    width = max(map(len, configs))
    for name, path in configs.items():
        print(f"{name:<{width}}  {describe(path)}")
    print(f"({shipped_dir()}; run one with: losslines run NAME)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from losslines.store.info import describe, summarize

    print(json.dumps(summarize(args.store), indent=2) if args.json else describe(args.store))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from losslines.store.verify import stored_state, verify_store

    findings = verify_store(args.store)
    committed, status = stored_state(args.store)  # as stored: they may be what is wrong
    if args.json:
        print(json.dumps({"store": str(args.store), "valid": not findings, "committed_lines": committed,
                          "status": status, "findings": [dataclasses.asdict(f) for f in findings]}, indent=2))
        return 1 if findings else 0
    for finding in findings:
        print(finding)
    verdict = "invalid" if findings else "valid"
    print(f"{verdict}: {args.store} ({committed} committed lines, status {status}, {len(findings)} finding(s))")
    return 1 if findings else 0


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from losslines.store.upgrade import upgrade_store

    where = upgrade_store(args.store, args.out)
    print(f"upgraded {args.store} to store format 2: {where}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from losslines.analysis import run_analyze

    run_analyze(args)
    return 0


def _cmd_import_pickles(args: argparse.Namespace) -> int:
    from losslines.store.importers import run_import

    run_import(args)
    return 0


def _toml_string(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


class _DefaultsShown(argparse.HelpFormatter):
    """Help that ends with ``(default: X)`` for options with a real default not already named."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or isinstance(action, argparse._VersionAction)):
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    from losslines import __version__
    from losslines.analysis import add_analyze_arguments
    from losslines.store.importers import add_import_arguments

    parser = argparse.ArgumentParser(
        prog="losslines",
        description="Measure the loss along every optimizer update direction, store it, analyse it.",
    )
    parser.add_argument("--version", action="version", version=f"losslines {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log lines on stderr (-vv: debug, from every losslines module)")
    parser.add_argument("-q", "--quiet", action="store_true", dest="silent",
                        help="warnings and errors only: no progress, no log lines")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an error (internal errors: exit 1; user errors: exit 2)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def add_command(*args, **kwargs):  # every command's --help shows the defaults
        return add_parser(*args, formatter_class=_DefaultsShown, **kwargs)

    sub.add_parser = add_command

    p = sub.add_parser("run", help="train and measure lines into a zarr store")
    p.add_argument("config", help="a TOML config file, or the name of a shipped one (losslines configs)")
    p.add_argument("--out", help="store path (overrides store.path)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.05 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue a stopped run from its last checkpoint")
    p.add_argument("--data-root", help="dataset cache directory (default $LOSSLINES_DATA or ~/.cache/losslines)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="overrides the config's device")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("measure", help="measure the lines of a recording (run with measure.mode = 'record') "
                                       "into a store; under torchrun, processes take whole lines")
    p.add_argument("recording", help="the recording: local path or fsspec URL")
    p.add_argument("--out", required=True, help="the store to write (local path or fsspec URL)")
    p.add_argument("--resume", action="store_true", help="continue a stopped measurement after its committed lines")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="overrides the recorded config's device")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (default 0: OMP_NUM_THREADS if set, which torchrun sets to 1, "
                        "else the cores this process may use)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("configs", help="list the shipped configs (run one by name: losslines run quickstart)")
    p.set_defaults(func=_cmd_configs)

    p = sub.add_parser("info", help="summarise a store")
    p.add_argument("store", help="a store: local path or fsspec URL (s3://..., memory://...)")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("verify", help="check a store's format, chunk checksums and measurement invariants")
    p.add_argument("store", help="a store: local path or fsspec URL (s3://..., memory://...)")
    p.add_argument("--json", action="store_true",
                   help="the verdict and every finding (check, where, detail) as JSON; exit 1 if any")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("upgrade", help="convert a format 1 store to format 2 (in place, or to --out)")
    p.add_argument("store", help="a format 1 store: local path or fsspec URL")
    p.add_argument("--out", default=None,
                   help="write the format 2 store here and keep the old one (default: convert in place; local only)")
    p.set_defaults(func=_cmd_upgrade)

    p = sub.add_parser("analyze", help="write report.md, metrics.json and figures for a store")
    add_analyze_arguments(p)
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("import-pickles", help="convert the original code's line_data_*.pickle files")
    add_import_arguments(p)
    p.set_defaults(func=_cmd_import_pickles)
    return parser


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted (not the stream
    of the moment it was made, which a caller may have replaced and closed since)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: int, silent: bool) -> None:
    """Log lines of the ``losslines`` loggers on stderr: INFO by default, WARNING with ``-q``,
    DEBUG with ``-vv`` (``-v``: INFO from every losslines module, including the engine)."""
    level = logging.WARNING if silent else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logger = logging.getLogger("losslines")
    for handler in list(logger.handlers):
        if getattr(handler, "_losslines_cli", False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("losslines: %(message)s"))
    handler._losslines_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    logging.getLogger("losslines.engine").setLevel(level if verbose else max(level, logging.WARNING))


def is_user_error(err: BaseException) -> bool:
    """Is ``err`` the user's to fix (exit 2, one line) rather than an internal error (exit 1)?

    User errors are the path errors (``FileNotFoundError``, ``FileExistsError``,
    ``NotADirectoryError``, ``IsADirectoryError``, ``PermissionError``) and every ``ValueError``
    (``ConfigError`` included) that a ``raise`` statement of the losslines package raised: its
    validation. A ``ValueError`` raised inside numpy, torch or zarr, or by a builtin or C
    function that losslines called (e.g. ``int("x")``), is internal, as is every other exception.
    """
    if isinstance(err, _PATH_ERRORS):
        return True
    return isinstance(err, ValueError) and _raised_by_losslines(err)


def storage_failure(err: BaseException) -> OSError | None:
    """The ``OSError`` (disk full, I/O error, read-only filesystem...) behind ``err``, if writing the
    store or its checkpoint failed on one: ``err`` itself, or the cause of the store writer's
    ``WriterError`` (any ``OSError`` there: the writer thread found the folder gone, say). A path
    error raised directly is a user error (:func:`is_user_error`), not a storage failure."""
    from losslines.store.writer import WriterError

    if isinstance(err, WriterError):
        return err.__cause__ if isinstance(err.__cause__, OSError) else None
    return err if isinstance(err, OSError) and not isinstance(err, _PATH_ERRORS) else None


def _raised_by_losslines(err: BaseException) -> bool:
    """Was ``err`` raised by a ``raise`` statement in the losslines package (its innermost frame)?"""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if not Path(code.co_filename).resolve().is_relative_to(_PACKAGE):
        return False
    return _opname_at(code, tb.tb_lasti) in ("RAISE_VARARGS", "RERAISE")  # not a CALL into C code


def _opname_at(code: CodeType, offset: int) -> str | None:
    return next((ins.opname for ins in dis.get_instructions(code) if ins.offset == offset), None)


def _report_internal_error(err: BaseException, debug: bool) -> str:
    """The line telling where the traceback of an internal error is: printed above (``--debug``),
    or written to a new file in the temporary directory."""
    if debug:
        return "(traceback above)"
    try:
        with tempfile.NamedTemporaryFile("w", prefix="losslines-traceback-", suffix=".log", delete=False) as f:
            traceback.print_exception(err, file=f)
    except OSError as write_err:
        return f"(the traceback could not be saved: {write_err}; run with --debug to print it)"
    return f"(traceback in {f.name}; run with --debug to print it)"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.silent)
    if args.silent and hasattr(args, "quiet"):
        args.quiet = True  # no progress either
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("losslines: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every error ends as one line and an exit code
        if args.debug:
            traceback.print_exception(err, file=sys.stderr)
        if is_user_error(err):
            print(f"losslines: error: {_first_line(err)}", file=sys.stderr)
            return EXIT_USAGE
        failure = storage_failure(err)
        if failure is not None:  # a full disk, an I/O error, a vanished folder: the environment's, not a bug
            hint = ("" if isinstance(failure, FileNotFoundError) else
                    "; once the storage is fixed, the same command with --resume continues")
            print(f"losslines: storage error: {_first_line(err)}{hint}", file=sys.stderr)
            return EXIT_INTERNAL
        where = _report_internal_error(err, args.debug)
        print(f"losslines: internal error: {type(err).__name__}: {_first_line(err)} {where}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
