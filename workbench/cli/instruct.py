"""`workbench instruct mix | self-instruct | serve`: thin wrappers over the library functions.

Numbers arrive as text and are converted here, so a value that is not a number gets the same one-line message
as one out of range (`--num: 'x' is not allowed; expected an integer >= 1`); ranges are checked by the library.
"""

from __future__ import annotations

import argparse
import sys

from workbench.errors import ConfigError, WorkbenchError


def register(subparsers) -> None:
    from workbench.instruct.backends import DEFAULT_RETRIES, DEFAULT_TIMEOUT
    from workbench.instruct.server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TOKENS

    p = subparsers.add_parser("instruct", help="instruction data: FLAN-style mixtures and self-instruct")
    sub = p.add_subparsers(dest="instruct_command", required=True)

    m = sub.add_parser("mix", help="build a FLAN-style instruction mixture")
    m.add_argument("--tasks", default=None, help="comma-separated tasks, each once (default: all built-in)")
    m.add_argument("--holdout", action="append", default=[], help="task, dataset or cluster to exclude (repeatable)")
    m.add_argument("--records", action="append", default=[], metavar="[NAME=]FILE",
                   help="instruction records to mix in as a task of their own (JSON lines: self-instruct, Alpaca, "
                        "`cot demos --format instruct`; repeatable)")
    m.add_argument("--cap", default="3000", help="examples-proportional cap per task, >= 1 (default 3000)")
    m.add_argument("--max-per-dataset", default="30000", help="a dataset's first N training rows, >= 1 (default 30000)")
    m.add_argument("--rates", default=None, help="explicit mixing rates, e.g. sst2=1,trec=2 (instead of proportional)")
    m.add_argument("--total", default=None, help="mixture size with --rates, >= 1")
    m.add_argument("--zero-shot-ratio", default="0.5", help="share of zero-shot examples, 0..1 (default 0.5)")
    m.add_argument("--options-ratio", default="0.5", help="share of examples with options, 0..1 (default 0.5)")
    m.add_argument("--shots", default="1,2,3,5", help="exemplar counts drawn for few-shot examples (each >= 1)")
    m.add_argument("--token-budget", default="960", help="exemplars + query must fit, >= 1 (default 960)")
    m.add_argument("--tokenizer", default=None, help="model alias/path to count tokens (default: words)")
    m.add_argument("--template-assignment", choices=["round_robin", "random"], default="round_robin")
    m.add_argument("--holdout-templates", default="0",
                   help="the last K plain templates of every task stay out of the mixture, for zero-shot evaluation "
                        "of the mixture's own tasks in unseen words (default 0)")
    m.add_argument("--templates-dir", default=None)
    m.add_argument("--seed", default="0")
    m.add_argument("--out", default="mixture", help="output folder (mixture.jsonl, hf/, summary.json)")
    m.add_argument("--no-mlflow", action="store_true")
    m.set_defaults(func=_mix)

    s = sub.add_parser("self-instruct", help="generate instructions with self-instruct (or --style alpaca)")
    s.add_argument("--num", default="100", help="instructions (with instances) to reach, >= 1 (default 100)")
    s.add_argument("--out", default="self_instruct.jsonl", help="output file (JSON lines); its folder must exist")
    s.add_argument("--resume", action="store_true", help="continue an existing --out file")
    s.add_argument("--style", choices=["self-instruct", "alpaca"], default="self-instruct")
    s.add_argument("--seeds", default=None, help="seed task file (default: the project's seed set)")
    _backend_args(s, DEFAULT_TIMEOUT, DEFAULT_RETRIES)
    s.add_argument("--prompts-per-round", default="8", help="prompts per round, >= 1 (default 8)")
    s.add_argument("--threshold", default="0.7",
                   help="reject if ROUGE-L F with any pool item is above; > 0 and <= 1 (default 0.7)")
    s.add_argument("--instruction-max-tokens", default="300", help=">= 1 (default 300)")
    s.add_argument("--instance-max-tokens", default="160", help=">= 1 (default 160)")
    s.add_argument("--seed", default="0")
    s.add_argument("--no-mlflow", action="store_true")
    s.add_argument("--no-progress", action="store_true", help="no progress bar and no final report on the console")
    s.set_defaults(func=_self_instruct)

    from workbench.cli import instruct_tuning

    instruct_tuning.register(sub)

    v = sub.add_parser("serve", help="serve a local model on an OpenAI-compatible /v1/completions endpoint")
    v.add_argument("--model", default="smollm2-135m")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); the server has no authentication")
    v.add_argument("--port", default="8000", help="0-65535; 0 picks a free port (default 8000)")
    v.add_argument("--batch-size", default="8", help=">= 1 (default 8)")
    v.add_argument("--threads", default=None, help="torch CPU threads, >= 1")
    v.add_argument("--max-body-bytes", default=str(DEFAULT_MAX_BODY_BYTES),
                   help=f"larger request bodies get HTTP 413 (default {DEFAULT_MAX_BODY_BYTES})")
    v.add_argument("--max-tokens", default=str(DEFAULT_MAX_TOKENS),
                   help=f"a request asking for more max_tokens gets HTTP 400 (default {DEFAULT_MAX_TOKENS})")
    v.set_defaults(func=_serve)


class _RefuseKey(argparse.Action):
    """`--api-key KEY`: without a flag of this name argparse reads it as an abbreviation of --api-key-env, and the
    key would be shown back in the message about that variable. Refused here, the value never repeated."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        raise argparse.ArgumentError(self, "a key is never given on the command line (it would stay in the shell's "
                                           "history and show in process lists; it is not repeated here); put it in "
                                           "an environment variable and name that with --api-key-env NAME")


def _backend_args(p: argparse.ArgumentParser, timeout: float, retries: int) -> None:
    p.add_argument("--model", default=None, help="local model alias/path, or the model name on --api-base")
    p.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", default=None, help="environment variable holding the API key (with --api-base)")
    p.add_argument("--api-key", action=_RefuseKey, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", default=None, help="requests in flight (with --api-base; default 4)")
    p.add_argument("--timeout", default=None,
                   help=f"seconds one HTTP attempt may take (with --api-base; default {timeout:g})")
    p.add_argument("--retries", default=None,
                   help=f"further attempts after a timeout, a lost connection, HTTP 429 or 5xx (with --api-base; "
                        f"default {retries})")
    p.add_argument("--batch-size", default=None, help="generation batch (local model; default 8)")
    p.add_argument("--threads", default=None, help="torch CPU threads (local model)")
    p.add_argument("--chat", action="store_true", help="wrap prompts in the local model's chat template")


# ---- text to numbers, naming the flag ------------------------------------------------------------------------

def _int(flag: str, text: str | None, expected: str = "an integer") -> int | None:
    if text is None:
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not allowed; expected {expected}") from None


def _float(flag: str, text: str | None, expected: str = "a number") -> float | None:
    if text is None:
        return None
    try:
        return float(str(text).strip())
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not allowed; expected {expected}") from None


def _os_errors(func):
    """A failing read or write (disk full, permissions changed mid-run) is one line naming the file."""
    def wrapped(args) -> int:
        try:
            return func(args)
        except OSError as e:
            where = e.filename or "output"
            raise WorkbenchError(f"{where}: {e.strerror or e}") from None
    wrapped.__name__ = func.__name__
    wrapped.__doc__ = func.__doc__
    return wrapped


# ---- backends ------------------------------------------------------------------------------------------------

def check_backend_args(args) -> None:
    """Flags that belong to the other backend are refused, not ignored."""
    if args.api_base:
        for flag, value in (("--batch-size", args.batch_size), ("--threads", args.threads),
                            ("--chat", args.chat or None)):
            if value is not None:
                raise ConfigError(f"{flag}: applies to the local model only, not to --api-base; drop it")
    else:
        for flag, value in (("--api-key-env", args.api_key_env), ("--concurrency", args.concurrency),
                            ("--timeout", args.timeout), ("--retries", args.retries)):
            if value is not None:
                raise ConfigError(f"{flag}: applies with --api-base only (an OpenAI-compatible server); "
                                  f"add --api-base or drop {flag}")


def make_backend(args):
    from workbench.instruct import checks as C
    from workbench.instruct.backends import (
        DEFAULT_MODEL,
        DEFAULT_RETRIES,
        DEFAULT_TIMEOUT,
        HTTPBackend,
        LocalBackend,
        check_api_base,
        resolve_local_model,
    )

    check_backend_args(args)
    if args.api_base:
        check_api_base(args.api_base)
        concurrency = _int("--concurrency", args.concurrency, "an integer >= 1")
        timeout = _float("--timeout", args.timeout, "a number of seconds > 0")
        retries = _int("--retries", args.retries, "an integer from 0 to 10")
        return HTTPBackend(args.api_base, model=args.model, api_key_env=args.api_key_env,
                           concurrency=4 if concurrency is None else concurrency,
                           timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                           retries=DEFAULT_RETRIES if retries is None else retries)
    batch = _int("--batch-size", args.batch_size, "an integer >= 1")
    batch = 8 if batch is None else C.integer("--batch-size", batch, lo=1)
    threads = _int("--threads", args.threads, "an integer >= 1")
    if threads is not None:
        C.integer("--threads", threads, lo=1)
    model = args.model or DEFAULT_MODEL
    resolve_local_model(model)  # a bad name is refused before any weights load
    if not args.no_progress:  # seconds without a bar: the weights are read and de-quantised
        print(f"loading {model} ...", file=sys.stderr, flush=True)
    return LocalBackend.load(model, batch_size=batch, chat=args.chat, threads=threads)


# ---- commands ------------------------------------------------------------------------------------------------

def _parse_rates(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    rates: dict[str, float] = {}
    expected = "comma-separated name=rate pairs, e.g. sst2=1,trec=2"
    if not text.strip():
        raise ConfigError(f"--rates: {text!r} is not allowed; expected {expected}")
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--rates: {item!r} is not allowed; expected {expected}")
        if name in rates:
            raise ConfigError(f"--rates: {text!r} is not allowed; expected each task once ({name!r} is given twice)")
        rates[name] = _float(f"--rates {name}", value, "a number >= 0 (a mixing rate)")
    return rates


def _parse_shots(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--shots: {text!r} is not allowed; expected a comma-separated list of integers >= 1, "
                          f"e.g. 1,2,3,5") from None


@_os_errors
def _mix(args) -> int:
    from workbench.instruct.mix import ALL_TASKS, MixConfig, build_mixture, format_summary

    if args.tasks is not None and args.rates is not None:
        raise ConfigError("--tasks: not used with --rates (the rates name the tasks); drop --tasks")
    cfg = MixConfig(
        tasks=tuple(t.strip() for t in args.tasks.split(",")) if args.tasks is not None else ALL_TASKS,
        holdout=tuple(args.holdout), records=tuple(args.records), cap=_int("--cap", args.cap, "an integer >= 1"),
        max_per_dataset=_int("--max-per-dataset", args.max_per_dataset, "an integer >= 1"),
        rates=_parse_rates(args.rates), total=_int("--total", args.total, "an integer >= 1"),
        zero_shot_ratio=_float("--zero-shot-ratio", args.zero_shot_ratio, "a number from 0 to 1"),
        options_ratio=_float("--options-ratio", args.options_ratio, "a number from 0 to 1"),
        shots=_parse_shots(args.shots), token_budget=_int("--token-budget", args.token_budget, "an integer >= 1"),
        template_assignment=args.template_assignment, templates_dir=args.templates_dir, tokenizer=args.tokenizer,
        holdout_templates=_int("--holdout-templates", args.holdout_templates, "an integer >= 0"),
        seed=_int("--seed", args.seed), out=args.out, log_mlflow=not args.no_mlflow,
    )
    print(format_summary(build_mixture(cfg)))
    return 0


@_os_errors
def _self_instruct(args) -> int:
    from workbench.instruct.self_instruct import Generator, SelfInstructConfig, generate

    cfg = SelfInstructConfig(
        out=args.out, num=_int("--num", args.num, "an integer >= 1"), style=args.style, seeds=args.seeds,
        resume=args.resume, seed=_int("--seed", args.seed),
        prompts_per_round=_int("--prompts-per-round", args.prompts_per_round, "an integer >= 1"),
        threshold=_float("--threshold", args.threshold, "a number > 0 and <= 1"),
        instruction_max_tokens=_int("--instruction-max-tokens", args.instruction_max_tokens, "an integer >= 1"),
        instance_max_tokens=_int("--instance-max-tokens", args.instance_max_tokens, "an integer >= 1"),
        log_mlflow=not args.no_mlflow, progress=not args.no_progress,
    )
    # Validate the values, the seed file and the output before loading a model or reaching a server.
    Generator.preflight(cfg)
    check_backend_args(args)
    result = generate(cfg, make_backend(args))
    print(f"wrote {len(result.records)} instructions to {result.out}")
    return 0


@_os_errors
def _serve(args) -> int:
    from workbench.instruct import checks as C
    from workbench.instruct.backends import LocalBackend, resolve_local_model
    from workbench.instruct.server import make_server

    port = C.integer("--port", _int("--port", args.port, "an integer from 0 to 65535 (0 picks a free port)"),
                     lo=0, hi=65535, what="0 picks a free port")
    host = (args.host or "").strip()
    if not host:
        C.refuse("--host", args.host, "an address to bind, e.g. 127.0.0.1")
    batch = C.integer("--batch-size", _int("--batch-size", args.batch_size, "an integer >= 1"), lo=1)
    threads = _int("--threads", args.threads, "an integer >= 1")
    if threads is not None:
        C.integer("--threads", threads, lo=1)
    max_body = C.integer("--max-body-bytes", _int("--max-body-bytes", args.max_body_bytes, "an integer >= 1024"),
                         lo=1024)
    max_tokens = C.integer("--max-tokens", _int("--max-tokens", args.max_tokens, "an integer >= 1"), lo=1)
    try:
        server = make_server(None, host, port, max_body_bytes=max_body, max_tokens=max_tokens)
    except OSError as e:  # in use, not an address of this machine, a name that does not resolve
        reason = e.strerror or str(e)
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({reason}); choose another --port "
                          f"or --host") from None
    try:
        resolve_local_model(args.model)  # a bad name is refused before any weights load
        if not server.is_loopback:
            print(f"warning: --host {host}: the server has no authentication; anyone who can reach "
                  f"{host}:{server.server_port} can use the model (bind 127.0.0.1, or put an authenticating proxy "
                  f"in front)", file=sys.stderr, flush=True)
        server.backend = LocalBackend.load(args.model, batch_size=batch, threads=threads)
        print(f"serving {args.model} on http://{host}:{server.server_port}/v1 (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    finally:
        server.server_close()
    return 0
