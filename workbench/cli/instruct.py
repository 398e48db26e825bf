"""`workbench instruct mix | self-instruct | serve`: thin wrappers over the library functions."""

from __future__ import annotations

import argparse

from workbench.errors import WorkbenchError


def register(subparsers) -> None:
    p = subparsers.add_parser("instruct", help="instruction data: FLAN-style mixtures and self-instruct")
    sub = p.add_subparsers(dest="instruct_command", required=True)

    m = sub.add_parser("mix", help="build a FLAN-style instruction mixture")
    m.add_argument("--tasks", default=None, help="comma-separated tasks (default: all built-in)")
    m.add_argument("--holdout", action="append", default=[], help="task, dataset or cluster to exclude (repeatable)")
    m.add_argument("--cap", type=int, default=3000, help="examples-proportional cap per task (default 3000)")
    m.add_argument("--max-per-dataset", type=int, default=30_000)
    m.add_argument("--rates", default=None, help="explicit mixing rates, e.g. sst2=1,trec=2 (instead of proportional)")
    m.add_argument("--total", type=int, default=None, help="mixture size with --rates")
    m.add_argument("--zero-shot-ratio", type=float, default=0.5)
    m.add_argument("--options-ratio", type=float, default=0.5)
    m.add_argument("--shots", default="1,2,3,5", help="exemplar counts drawn for few-shot examples")
    m.add_argument("--token-budget", type=int, default=960)
    m.add_argument("--tokenizer", default=None, help="model alias/path to count tokens (default: words)")
    m.add_argument("--template-assignment", choices=["round_robin", "random"], default="round_robin")
    m.add_argument("--templates-dir", default=None)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", default="mixture", help="output folder (mixture.jsonl, hf/, summary.json)")
    m.add_argument("--no-mlflow", action="store_true")
    m.set_defaults(func=_mix)

    s = sub.add_parser("self-instruct", help="generate instructions with self-instruct (or --style alpaca)")
    s.add_argument("--num", type=int, default=100, help="instructions (with instances) to reach")
    s.add_argument("--out", default="self_instruct.jsonl")
    s.add_argument("--resume", action="store_true", help="continue an existing --out file")
    s.add_argument("--style", choices=["self-instruct", "alpaca"], default="self-instruct")
    s.add_argument("--seeds", default=None, help="seed task file (default: the project's seed set)")
    _backend_args(s)
    s.add_argument("--prompts-per-round", type=int, default=8)
    s.add_argument("--threshold", type=float, default=0.7, help="reject if ROUGE-L F with any pool item is above")
    s.add_argument("--instruction-max-tokens", type=int, default=300)
    s.add_argument("--instance-max-tokens", type=int, default=160)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-mlflow", action="store_true")
    s.set_defaults(func=_self_instruct)

    v = sub.add_parser("serve", help="serve a local model on an OpenAI-compatible /v1/completions endpoint")
    v.add_argument("--model", default="smollm2-135m")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--batch-size", type=int, default=8)
    v.add_argument("--threads", type=int, default=None)
    v.set_defaults(func=_serve)


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="local model alias/path, or the model name on --api-base")
    p.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", default=None, help="environment variable holding the API key")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (HTTP backend)")
    p.add_argument("--batch-size", type=int, default=8, help="generation batch (local backend)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (local backend)")
    p.add_argument("--chat", action="store_true", help="wrap prompts in the local model's chat template")


def make_backend(args):
    from workbench.instruct.backends import DEFAULT_MODEL, HTTPBackend, LocalBackend

    if args.api_base:
        return HTTPBackend(args.api_base, model=args.model, api_key_env=args.api_key_env,
                           concurrency=args.concurrency)
    return LocalBackend.load(args.model or DEFAULT_MODEL, batch_size=args.batch_size, chat=args.chat,
                             threads=args.threads)


def _parse_rates(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    rates = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise WorkbenchError(f"--rates: {item!r} is not name=number") from None
    return rates


def _mix(args) -> int:
    from workbench.instruct.mix import ALL_TASKS, MixConfig, build_mixture, format_summary

    try:
        shots = tuple(int(x) for x in args.shots.split(","))
    except ValueError:
        raise WorkbenchError(f"--shots: {args.shots!r} is not a comma-separated list of integers") from None
    cfg = MixConfig(
        tasks=tuple(t.strip() for t in args.tasks.split(",")) if args.tasks else ALL_TASKS,
        holdout=tuple(args.holdout), cap=args.cap, max_per_dataset=args.max_per_dataset,
        rates=_parse_rates(args.rates), total=args.total, zero_shot_ratio=args.zero_shot_ratio,
        options_ratio=args.options_ratio, shots=shots, token_budget=args.token_budget,
        template_assignment=args.template_assignment, templates_dir=args.templates_dir, tokenizer=args.tokenizer,
        seed=args.seed, out=args.out, log_mlflow=not args.no_mlflow,
    )
    print(format_summary(build_mixture(cfg)))
    return 0


def _self_instruct(args) -> int:
    from workbench.instruct.self_instruct import SelfInstructConfig, generate

    cfg = SelfInstructConfig(
        out=args.out, num=args.num, style=args.style, seeds=args.seeds, resume=args.resume, seed=args.seed,
        prompts_per_round=args.prompts_per_round, threshold=args.threshold,
        instruction_max_tokens=args.instruction_max_tokens, instance_max_tokens=args.instance_max_tokens,
        log_mlflow=not args.no_mlflow,
    )
    # Validate the seed file and the output before loading a model or reaching a server.
    from workbench.instruct.self_instruct import Generator

    Generator.preflight(cfg)
    result = generate(cfg, make_backend(args))
    print(f"wrote {len(result.records)} instructions to {result.out}")
    return 0


def _serve(args) -> int:
    from workbench.instruct.backends import LocalBackend
    from workbench.instruct.server import make_server

    server = make_server(LocalBackend.load(args.model, batch_size=args.batch_size, threads=args.threads),
                         args.host, args.port)
    print(f"serving {args.model} on http://{args.host}:{server.server_port}/v1 (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
