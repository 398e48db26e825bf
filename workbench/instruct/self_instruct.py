"""The Self-Instruct bootstrap loop (and Alpaca's single-pass variant), resumable and appended as it goes.

One round: sample in-context instructions (8, of which up to 2 machine-generated), ask for more, parse and
filter them (rules, then ROUGE-L novelty against the whole pool), ask whether each new one is a
classification task, generate instances (output-first for classification, input-first otherwise), filter
the instances, and append the instructions that kept at least one instance to the output file.

The pool is the seed instructions plus every record in the output file. A candidate joins the pool as soon as
it passes the novelty check (so later candidates of the same round are compared with it); if it then gets no
valid instance it leaves the pool again. That makes `--resume` exact: the file alone rebuilds the pool.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct import checks as C
from workbench.instruct import si_prompts
from workbench.instruct.backends import Backend, Decoding
from workbench.instruct.filters import (
    ALPACA_EXTRA_BLACKLIST,
    SELF_INSTRUCT_BLACKLIST,
    blacklist_pattern,
    filter_instances,
    instruction_reject_reason,
    parse_alpaca,
    parse_classification_instances,
    parse_generation_instances,
    parse_instruction_list,
)
from workbench.instruct.rouge import DEFAULT_THRESHOLD, NoveltyIndex
from workbench.instruct.seeds import DEFAULT_SEEDS, Instance, SeedTask, load_seed_tasks


@dataclass
class SelfInstructConfig:
    out: str = "self_instruct.jsonl"
    num: int = 100  # instructions (with at least one instance) to reach
    style: str = "self-instruct"  # or "alpaca"
    seeds: str | None = None  # seed file; default: the project's own seed set
    resume: bool = False
    seed: int = 0
    prompts_per_round: int = 8  # Self-Instruct sends 5 prompts per request batch; one local batch here
    num_prompt_instructions: int = 8
    max_machine_in_prompt: int = 2
    threshold: float = DEFAULT_THRESHOLD
    max_instances: int = 5
    most_similar_k: int = 10
    # Decoding. The reference uses max_tokens 1024 (instructions) and 300/350 (instances); on a CPU a
    # rambling small model makes that the whole cost, so the defaults are shorter (see docs/instruct.md).
    instruction_max_tokens: int = 300
    instruction_temperature: float = 0.7
    instruction_top_p: float = 0.5
    presence_penalty: float = 2.0
    repetition_penalty: float | None = 1.1  # local backend only
    instance_max_tokens: int = 160
    alpaca_num_seeds: int = 3
    max_rounds_without_progress: int = 50
    log_mlflow: bool = True
    progress: bool = True


@dataclass
class Candidate:
    instruction: str
    doc: int  # its index in the novelty pool
    most_similar: dict[str, float]
    max_similarity: float
    request_idx: int
    is_classification: bool = False
    instances: list[Instance] = field(default_factory=list)
    truncated: bool = False


@dataclass
class RunState:
    """What a resumed run needs besides the records: counters for the report (best effort)."""

    request_idx: int = 0
    rounds: int = 0
    reasons: Counter = field(default_factory=Counter)
    candidates: int = 0


@dataclass
class Result:
    out: Path
    records: list[dict]
    state: RunState
    stats: dict


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.json")


def _stats_path(out: Path) -> Path:
    return out.with_name(out.name + ".stats.json")


# A torn last line is the start of a JSON object (every record this module writes begins so).
_RECORD_START = b'{"'


def _check_record(rec, where: str) -> None:
    if not isinstance(rec, dict):
        raise ConfigError(f"{where}: expected a JSON object (a record), got {type(rec).__name__}; "
                          f"is this a self-instruct output file?")
    if not isinstance(rec.get("instruction"), str) or not rec["instruction"].strip():
        raise ConfigError(f"{where}: a record needs a non-empty string field 'instruction'")
    idx = rec.get("request_idx", 0)
    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
        raise ConfigError(f"{where}: field 'request_idx' must be an integer >= 0, got {idx!r}")
    instances = rec.get("instances", [])
    if not isinstance(instances, list):
        raise ConfigError(f"{where}: field 'instances' must be a list, got {type(instances).__name__}")
    for k, inst in enumerate(instances):
        if not isinstance(inst, dict) or not all(isinstance(inst.get(key), str) for key in ("input", "output")):
            raise ConfigError(f"{where}: field 'instances[{k}]' must be an object with string 'input' and 'output'")
    if not isinstance(rec.get("is_classification", False), bool):
        raise ConfigError(f"{where}: field 'is_classification' must be true or false")
    sim = rec.get("max_similarity", 0.0)
    if not isinstance(sim, (int, float)) or isinstance(sim, bool):
        raise ConfigError(f"{where}: field 'max_similarity' must be a number, got {sim!r}")


def read_records(out: Path, repair: bool = True) -> list[dict]:
    """Read and check the output file. A torn last line (the process was killed while writing it) is cut off
    when `repair`; nothing else is ever changed, and nothing is changed unless every complete line is a record."""
    out = Path(out)
    if not out.exists():
        return []
    data = C.read_bytes(out, "--out expects a file")
    keep = data.rfind(b"\n") + 1
    records = []
    for line_no, line in enumerate(C.decode_lines(out, data[:keep]), start=1):
        if not line.strip():
            continue
        where = f"{out}: line {line_no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e.msg}); cannot resume from it: fix or remove that "
                              f"line, or choose another --out") from None
        _check_record(rec, where)
        records.append(rec)
    tail = data[keep:]
    if tail.strip():
        line_no = data[:keep].count(b"\n") + 1
        where = f"{out}: line {line_no}"
        try:
            rec = json.loads(tail.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            rec = None
        if rec is not None:  # a complete record without its newline (edited by hand): keep it
            _check_record(rec, where)
            records.append(rec)
            if repair:
                _write_bytes(out, b"\n", "a")
        elif tail.startswith(_RECORD_START) or tail == b"{":
            if repair:  # torn while being written: the only thing ever cut
                with open(out, "r+b") as f:
                    f.truncate(keep)
        else:
            raise ConfigError(f"{where}: an incomplete line that is not a self-instruct record; fix or remove it, "
                              f"or choose another --out")
    return records


def _write_bytes(path: Path, data: bytes, mode: str) -> None:
    try:
        with open(path, mode + "b") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ConfigError(f"{path}: cannot write ({e.strerror or e})") from None


def _load_state(out: Path) -> RunState:
    path = _state_path(out)
    if not path.exists():
        return RunState()
    hint = "delete it to resume without the old counters (they are for the report only)"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable state file ({getattr(e, 'msg', None) or e}); {hint}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object; {hint}")
    ints = {k: raw.get(k, 0) for k in ("request_idx", "rounds", "candidates")}
    reasons = raw.get("reasons", {})
    if (not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints.values())
            or not isinstance(reasons, dict)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in reasons.values())):
        raise ConfigError(f"{path}: counters must be integers >= 0; {hint}")
    return RunState(ints["request_idx"], ints["rounds"], Counter(reasons), ints["candidates"])


def _save_state(out: Path, state: RunState) -> None:
    path = _state_path(out)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"request_idx": state.request_idx, "rounds": state.rounds,
                                   "reasons": dict(state.reasons), "candidates": state.candidates}))
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write ({e.strerror or e})") from None


def check_config(cfg: SelfInstructConfig) -> None:
    """Every value, in the one message shape, naming the flag (or the config field where no flag sets it)."""
    if cfg.style not in ("self-instruct", "alpaca"):
        C.refuse("--style", cfg.style, "self-instruct or alpaca")
    C.integer("--num", cfg.num, lo=1, what="instructions to reach")
    C.integer("--seed", cfg.seed)
    C.integer("--prompts-per-round", cfg.prompts_per_round, lo=1)
    C.number("--threshold", cfg.threshold, lo=0, hi=1, lo_open=True,
             what="ROUGE-L F above which a candidate is rejected; 0.7 in the paper")
    C.integer("--instruction-max-tokens", cfg.instruction_max_tokens, lo=1)
    C.integer("--instance-max-tokens", cfg.instance_max_tokens, lo=1)
    C.integer("num_prompt_instructions", cfg.num_prompt_instructions, lo=1)
    C.integer("max_machine_in_prompt", cfg.max_machine_in_prompt, lo=0, hi=cfg.num_prompt_instructions)
    C.integer("max_instances", cfg.max_instances, lo=1)
    C.integer("most_similar_k", cfg.most_similar_k, lo=0)
    C.number("instruction_temperature", cfg.instruction_temperature, lo=0)
    C.number("instruction_top_p", cfg.instruction_top_p, lo=0, hi=1, lo_open=True)
    C.number("presence_penalty", cfg.presence_penalty, lo=-2, hi=2)
    if cfg.repetition_penalty is not None:
        C.number("repetition_penalty", cfg.repetition_penalty, lo=0, lo_open=True)
    C.integer("alpaca_num_seeds", cfg.alpaca_num_seeds, lo=1)
    C.integer("max_rounds_without_progress", cfg.max_rounds_without_progress, lo=1)


class Generator:
    """One self-instruct run: the pool, the backend, the output file."""

    @staticmethod
    def preflight(cfg: SelfInstructConfig) -> list[SeedTask]:
        """Every input check that needs no model: values, seed file, output file (and its records, its state).
        Nothing is written. Returns the seed tasks."""
        check_config(cfg)
        seeds = load_seed_tasks(cfg.seeds)
        if cfg.style == "alpaca" and len(seeds) < cfg.alpaca_num_seeds:
            raise ConfigError(f"{cfg.seeds or DEFAULT_SEEDS}: {len(seeds)} seed task(s); --style alpaca shows "
                              f"{cfg.alpaca_num_seeds} per prompt, so give at least {cfg.alpaca_num_seeds}")
        out = C.output_file(cfg.out, "--out")
        for side in (_state_path(out), _stats_path(out)):
            if side.exists() and not side.is_file():
                raise ConfigError(f"--out {cfg.out}: {side} (written beside it) is not a file; remove it or "
                                  f"choose another --out")
        if out.exists() and out.stat().st_size > 0:
            if not cfg.resume:
                raise ConfigError(f"--out {out}: the file exists; pass --resume to continue it, or choose another "
                                  f"--out (nothing is overwritten)")
            read_records(out, repair=False)
            _load_state(out)
        return seeds

    def __init__(self, cfg: SelfInstructConfig, backend: Backend):
        self.seeds: list[SeedTask] = self.preflight(cfg)
        self.cfg = cfg
        self.backend = backend
        self.out = Path(cfg.out)
        words = SELF_INSTRUCT_BLACKLIST + (ALPACA_EXTRA_BLACKLIST if cfg.style == "alpaca" else ())
        self.blacklist = blacklist_pattern(words)
        self.index = NoveltyIndex(cfg.threshold)
        for s in self.seeds:
            self.index.add(s.instruction)
        self.records: list[dict] = []
        self.state = RunState()
        self.bar = None
        self._round = 1
        self._stage = "starting"
        self._last_draw = 0.0
        self._accepted_in_round = 0
        if self.out.exists() and self.out.stat().st_size > 0:
            self.records = read_records(self.out)
            self.state = _load_state(self.out)
            self.state.request_idx = max([self.state.request_idx] + [r.get("request_idx", -1) + 1
                                                                    for r in self.records])
            for r in self.records:
                self.index.add(r["instruction"])

    # -- progress -------------------------------------------------------------------------------------
    def _show(self, stage: str | None = None, force: bool = True) -> None:
        """Redraw the bar's postfix: the round and its stage, candidates so far, accepted, and rejections by reason
        (at most twice a second unless `force`)."""
        if stage is not None:
            self._stage = stage
        if self.bar is None or self.bar.disable:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.5:
            return
        self._last_draw = now
        self.bar.set_postfix_str(_postfix(self.state, f"round {self._round}: {self._stage}", len(self.records)),
                                 refresh=False)
        self.bar.refresh()

    def _complete(self, prompts: list[str], dec: Decoding, stage: str, done: int = 0, total: int | None = None,
                  each=None) -> list:
        """The backend's completions, asked in chunks (its batch, or its requests in flight) so that the bar moves.
        `done` of `total` items of this stage were asked before (the bar says `stage done/total`). `each(start,
        completions)` gets every chunk as it arrives."""
        total = len(prompts) if total is None else total
        size = getattr(self.backend, "batch_size", None) or getattr(self.backend, "concurrency", None) or len(prompts)
        size = max(1, int(size))
        hook_owner = self.backend if hasattr(self.backend, "progress_hook") else None
        out = []
        try:
            for start in range(0, len(prompts), size):
                label = f"{stage} {done + start}/{total}"
                self._show(label)
                if hook_owner is not None:
                    hook_owner.progress_hook = lambda tokens, limit, label=label: self._show(
                        f"{label} ({tokens}/{limit} tokens)", force=False)
                chunk = self.backend.complete(prompts[start:start + size], dec)
                out += chunk
                if each is not None:
                    each(start, chunk)
        finally:
            if hook_owner is not None:
                hook_owner.progress_hook = None
        self._show(f"{stage} {done + len(prompts)}/{total}")
        return out

    # -- one round ------------------------------------------------------------------------------------
    def _rng(self, request_idx: int) -> random.Random:
        # Seeded by position, so a resumed run draws the same prompts it would have drawn.
        return random.Random(f"{self.cfg.seed}:{request_idx}")

    def _instruction_prompt(self, request_idx: int) -> str:
        rng = self._rng(request_idx)
        machine = [r["instruction"] for r in self.records]
        chosen = rng.sample(machine, min(self.cfg.max_machine_in_prompt, len(machine)))
        humans = rng.sample([s.instruction for s in self.seeds],
                            min(len(self.seeds), self.cfg.num_prompt_instructions - len(chosen)))
        chosen += humans
        rng.shuffle(chosen)
        return si_prompts.instruction_prompt(chosen)

    def _consider(self, text: str, request_idx: int, round_new: list[Candidate]) -> Candidate | None:
        self.state.candidates += 1
        reason = instruction_reject_reason(text, self.blacklist)
        if reason is None:
            verdict = self.index.check(text)
            if not verdict.novel:
                reason = "similar"
        if reason is not None:
            self.state.reasons[reason] += 1
            self._show(force=False)
            return None
        top = self.index.top_k(text, self.cfg.most_similar_k)
        doc = self.index.add(text)
        cand = Candidate(text, doc, {self.index.texts[j]: round(s, 4) for j, s in top},
                         top[0][1] if top else 0.0, request_idx)
        round_new.append(cand)
        self._show(force=False)
        return cand

    def _round_self_instruct(self) -> None:
        cfg = self.cfg
        first = self.state.request_idx
        prompts = [self._instruction_prompt(first + k) for k in range(cfg.prompts_per_round)]
        dec = Decoding(max_tokens=cfg.instruction_max_tokens, temperature=cfg.instruction_temperature,
                       top_p=cfg.instruction_top_p, stop=si_prompts.INSTRUCTION_STOP,
                       presence_penalty=cfg.presence_penalty, repetition_penalty=cfg.repetition_penalty,
                       seed=hash((cfg.seed, first)) & 0x7FFFFFFF)
        new: list[Candidate] = []

        def judge(start: int, completions: list) -> None:  # as each chunk arrives: the counts move within the round
            for k, comp in enumerate(completions, start):
                if comp.finish_reason == "length":
                    self.state.reasons["truncated_response"] += 1
                for text in parse_instruction_list(comp.text, comp.finish_reason):
                    self._consider(text, first + k, new)

        self._complete(prompts, dec, "instructions", each=judge)
        self._show()
        if new:
            self._classify(new)
            # Instances chunk by chunk; each chunk's accepted records are appended (and fsync'd) at once.
            size = max(1, int(getattr(self.backend, "batch_size", None)
                              or getattr(self.backend, "concurrency", None) or len(new)))
            for start in range(0, len(new), size):
                if len(self.records) >= cfg.num:  # the target is reached: no instances for the rest
                    for c in new[start:]:
                        self.index.retire(c.doc)
                        self.state.reasons["over_target"] += 1
                    break
                chunk = new[start:start + size]
                self._instances(chunk, start, len(new))
                self._accept(chunk)

    def _classify(self, cands: list[Candidate]) -> None:
        dec = Decoding(max_tokens=3, temperature=0.0, stop=("\n", "Task"))
        answers = self._complete([si_prompts.classification_prompt(c.instruction) for c in cands], dec,
                                 "classification")
        for c, a in zip(cands, answers):
            c.is_classification = si_prompts.is_yes(a.text)

    def _instances(self, cands: list[Candidate], done: int = 0, total: int | None = None) -> None:
        dec = Decoding(max_tokens=self.cfg.instance_max_tokens, temperature=0.0, stop=si_prompts.INSTANCE_STOP,
                       presence_penalty=1.5, repetition_penalty=self.cfg.repetition_penalty)
        outs = self._complete([si_prompts.instance_prompt(c.instruction, c.is_classification) for c in cands], dec,
                              "instances", done, total)
        for c, comp in zip(cands, outs):
            parse = parse_classification_instances if c.is_classification else parse_generation_instances
            c.instances = parse(comp.text)
            c.truncated = comp.finish_reason == "length"

    def _round_alpaca(self) -> None:
        cfg = self.cfg
        first = self.state.request_idx
        prompts = []
        for k in range(cfg.prompts_per_round):
            rng = self._rng(first + k)
            # Alpaca shows seed tasks only, never machine-generated ones.
            prompts.append(si_prompts.alpaca_prompt(rng.sample(self.seeds, cfg.alpaca_num_seeds)))
        dec = Decoding(max_tokens=cfg.instruction_max_tokens, temperature=1.0, top_p=1.0, stop=("\n20", "20."),
                       repetition_penalty=cfg.repetition_penalty, seed=hash((cfg.seed, first)) & 0x7FFFFFFF)
        new: list[Candidate] = []

        def judge(start: int, completions: list) -> None:  # as each chunk arrives: the counts move within the round
            for k, comp in enumerate(completions, start):
                for instruction, inst in parse_alpaca(comp.text, comp.finish_reason, cfg.alpaca_num_seeds + 1):
                    cand = self._consider(instruction, first + k, new)
                    if cand is not None:
                        cand.instances = [inst]

        self._complete(prompts, dec, "instructions", each=judge)
        self._accept(new)

    # -- the loop -------------------------------------------------------------------------------------
    def _finish(self, cands: list[Candidate], remaining: int) -> list[dict]:
        kept = []
        for c in cands:
            rng = random.Random(f"{self.cfg.seed}:instances:{c.instruction}")
            instances, reason = filter_instances(c.instances, c.truncated, rng, self.cfg.max_instances)
            if reason is not None or len(kept) >= remaining:
                self.index.retire(c.doc)
                self.state.reasons[reason or "over_target"] += 1
                continue
            kept.append({
                "id": f"machine_{len(self.records) + len(kept)}",
                "instruction": c.instruction,
                "instances": [asdict(i) for i in instances],
                "is_classification": c.is_classification,
                "most_similar": c.most_similar,
                "max_similarity": c.max_similarity,
                "request_idx": c.request_idx,
                "style": self.cfg.style,
                "generator": self.backend.name,
            })
        return kept

    def _append(self, records: list[dict]) -> None:
        if records:
            _write_bytes(self.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"),
                         "a")
        self.records += records
        _save_state(self.out, self.state)

    def _accept(self, cands: list[Candidate]) -> None:
        """Filter the candidates' instances and append the records kept, at once."""
        kept = self._finish(cands, self.cfg.num - len(self.records))
        self._append(kept)
        self._accepted_in_round += len(kept)
        if self.bar is not None:
            self.bar.update(len(kept))
        self._show()

    def run(self) -> Result:
        cfg = self.cfg
        self.bar = tqdm(total=cfg.num, initial=min(len(self.records), cfg.num), desc=f"{cfg.style}", unit="instr",
                        disable=not cfg.progress, dynamic_ncols=True)
        stalled = 0
        try:
            while len(self.records) < cfg.num:
                self._accepted_in_round = 0
                self._round = self.state.rounds + 1
                try:
                    if cfg.style == "alpaca":
                        self._round_alpaca()
                    else:
                        self._round_self_instruct()
                except WorkbenchError as e:
                    # The backend failed (timeout, HTTP error): what was appended stays; say so, in one line.
                    raise type(e)(f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; {len(self.records)} "
                                  f"record(s) are kept in {self.out} (continue with --resume)") from None
                self.state.request_idx += cfg.prompts_per_round
                self.state.rounds += 1
                _save_state(self.out, self.state)
                self._show()
                stalled = 0 if self._accepted_in_round else stalled + 1
                if stalled >= cfg.max_rounds_without_progress:
                    raise WorkbenchError(
                        f"no instruction accepted in {stalled} rounds ({dict(self.state.reasons)}); "
                        f"{len(self.records)} records are in {self.out}. Try another model or --api-base.")
        finally:
            self.bar.close()
        from workbench.instruct.report import report

        stats = report(self.records, self.state, cfg)
        return Result(self.out, self.records, self.state, stats)


def _postfix(state: RunState, stage: str = "", accepted: int = 0) -> str:
    """`round 2: instances 3/6 | candidates 14, accepted 3, rejected 11: similar=6 length=5`"""
    rejected = sum(state.reasons.values())
    reasons = " ".join(f"{k}={v}" for k, v in state.reasons.most_common(6))
    return (f"{stage} | candidates {state.candidates}, accepted {accepted}, rejected {rejected}"
            + (f": {reasons}" if reasons else "")).lstrip(" |")


def generate(cfg: SelfInstructConfig, backend: Backend | None = None) -> Result:
    """Run (or resume) self-instruct generation. `backend` defaults to the local offline model."""
    if backend is None:
        from workbench.instruct.backends import LocalBackend

        backend = LocalBackend.load()
    return Generator(cfg, backend).run()
