"""The `workbench` command line: it parses, builds configs, and calls the library; nothing else.

Every command is a function of the library too (`workbench.train`, `workbench.sweep`, ...).
`python -m workbench ...` runs the same parser.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading

from workbench.errors import ConfigError, Terminated, WorkbenchError


# a flag named like a credential (--api-key, --apikey, --token, --password=...): its value is never repeated
_SECRET_FLAG = re.compile(r"--?[A-Za-z0-9_-]*(key|token|secret|passw|pwd)[A-Za-z0-9_-]*", re.IGNORECASE)


def _secret_values(argv: list[str]) -> list[str]:
    """The values given to credential-like flags (`--apikey sk-...`, `--token=...`); a `*-env` flag names a variable."""
    values = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if not _SECRET_FLAG.fullmatch(flag) or flag.endswith("-env"):
            continue
        if not eq and i + 1 < len(argv):
            value = argv[i + 1]
        if len(value) >= 4:  # shorter is no secret, and replacing it would garble the message
            values.append(value)
    return values


class _Parser(argparse.ArgumentParser):
    """argparse repeats what it could not place ("unrecognized arguments: --apikey sk-..."): the values of
    credential-like flags are shown as *** in its messages. Subcommands' parsers are of this class too."""

    hidden: tuple[str, ...] = ()  # set for the command line being parsed

    def error(self, message: str):
        for value in _Parser.hidden:
            message = message.replace(value, "***")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from workbench.cli import cot, info, instruct, ppt, prompts, runs

    parser = _Parser(prog="workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runs.register(sub)
    info.register(sub)
    prompts.register(sub)
    instruct.register(sub)
    ppt.register(sub)
    cot.register(sub)
    _add_verbose(parser, default=False)
    return parser


def _add_verbose(parser: argparse.ArgumentParser, default) -> None:
    """`--verbose` before or after any (sub)command. A subcommand's default is SUPPRESS: argparse would
    otherwise let it overwrite a `--verbose` given before the subcommand."""
    parser.add_argument("--verbose", action="store_true", default=default,
                        help="show the libraries' own log lines, warnings and progress bars (transformers, MLflow, "
                             "Optuna)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases name the same parser
                _add_verbose(child, argparse.SUPPRESS)


def error_message(e: WorkbenchError) -> str:
    """One line; a config field is named with the flag that sets it; a password in a URL is shown as `***`."""
    from workbench.cli.flags import flag_for
    from workbench.tracking.uris import redact_url

    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    flag = flag_for(e.field) if isinstance(e, ConfigError) else None
    if flag and f"{e.field}:" in text:
        text = text.replace(f"{e.field}:", f"{e.field} ({flag}):", 1)
    return redact_url(text)


def main(argv: list[str] | None = None) -> int:
    _Parser.hidden = tuple(_secret_values(sys.argv[1:] if argv is None else list(argv)))
    args = build_parser().parse_args(argv)
    if not args.verbose:
        from workbench.cli import noise

        noise.quiet()
    previous = _on_sigterm_raise()
    try:
        args.func(args)
    except WorkbenchError as e:
        print(f"error: {error_message(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `workbench methods | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _on_sigterm_raise():
    """SIGTERM's default ends the process on the spot, leaving its MLflow run RUNNING: raise Terminated instead
    (a KeyboardInterrupt, as Ctrl-C's SIGINT raises), so the run ends KILLED on the way out. Returns the handler
    it replaced (None where signals cannot be handled: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)
