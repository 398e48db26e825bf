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
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct import si_prompts
from workbench.instruct.backends import Backend, Decoding
from workbench.instruct.filters import (ALPACA_EXTRA_BLACKLIST, SELF_INSTRUCT_BLACKLIST, blacklist_pattern,
                                        filter_instances, instruction_reject_reason, parse_alpaca,
                                        parse_classification_instances, parse_generation_instances,
                                        parse_instruction_list)
from workbench.instruct.rouge import DEFAULT_THRESHOLD, NoveltyIndex
from workbench.instruct.seeds import Instance, SeedTask, load_seed_tasks


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


def read_records(out: Path) -> list[dict]:
    """Read the output file; a torn last line (the process was killed while writing it) is cut off."""
    if not out.exists():
        return []
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(out, "r+b") as f:
            f.truncate(keep)
    records = []
    for line_no, line in enumerate(data[:keep].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{out}: line {line_no}: not valid JSON ({e.msg}); cannot resume from it") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str):
            raise ConfigError(f"{out}: line {line_no}: a record needs a string field 'instruction'")
        records.append(rec)
    return records


def _load_state(out: Path) -> RunState:
    path = _state_path(out)
    if not path.exists():
        return RunState()
    raw = json.loads(path.read_text())
    return RunState(raw.get("request_idx", 0), raw.get("rounds", 0), Counter(raw.get("reasons", {})),
                    raw.get("candidates", 0))


def _save_state(out: Path, state: RunState) -> None:
    tmp = _state_path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps({"request_idx": state.request_idx, "rounds": state.rounds,
                               "reasons": dict(state.reasons), "candidates": state.candidates}))
    os.replace(tmp, _state_path(out))


class Generator:
    """One self-instruct run: the pool, the backend, the output file."""

    @staticmethod
    def preflight(cfg: SelfInstructConfig) -> None:
        """Every input check that needs no model: style, seed file, output file (and its records)."""
        if cfg.style not in ("self-instruct", "alpaca"):
            raise WorkbenchError(f"--style must be self-instruct or alpaca, not {cfg.style!r}")
        load_seed_tasks(cfg.seeds)
        out = Path(cfg.out)
        if out.exists() and out.stat().st_size > 0:
            if not cfg.resume:
                raise WorkbenchError(f"{out} exists; pass --resume to continue it, or choose another --out")
            read_records(out)

    def __init__(self, cfg: SelfInstructConfig, backend: Backend):
        self.preflight(cfg)
        self.cfg = cfg
        self.backend = backend
        self.out = Path(cfg.out)
        self.seeds: list[SeedTask] = load_seed_tasks(cfg.seeds)
        words = SELF_INSTRUCT_BLACKLIST + (ALPACA_EXTRA_BLACKLIST if cfg.style == "alpaca" else ())
        self.blacklist = blacklist_pattern(words)
        self.index = NoveltyIndex(cfg.threshold)
        for s in self.seeds:
            self.index.add(s.instruction)
        self.records: list[dict] = []
        self.state = RunState()
        if self.out.exists() and self.out.stat().st_size > 0:
            if not cfg.resume:
                raise WorkbenchError(f"{self.out} exists; pass --resume to continue it, or choose another --out")
            self.records = read_records(self.out)
            self.state = _load_state(self.out)
            self.state.request_idx = max([self.state.request_idx] + [r.get("request_idx", -1) + 1
                                                                    for r in self.records])
            for r in self.records:
                self.index.add(r["instruction"])
        self.out.parent.mkdir(parents=True, exist_ok=True)

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
            return None
        top = self.index.top_k(text, self.cfg.most_similar_k)
        doc = self.index.add(text)
        cand = Candidate(text, doc, {self.index.texts[j]: round(s, 4) for j, s in top},
                         top[0][1] if top else 0.0, request_idx)
        round_new.append(cand)
        return cand

    def _round_self_instruct(self) -> list[Candidate]:
        cfg = self.cfg
        first = self.state.request_idx
        prompts = [self._instruction_prompt(first + k) for k in range(cfg.prompts_per_round)]
        dec = Decoding(max_tokens=cfg.instruction_max_tokens, temperature=cfg.instruction_temperature,
                       top_p=cfg.instruction_top_p, stop=si_prompts.INSTRUCTION_STOP,
                       presence_penalty=cfg.presence_penalty, repetition_penalty=cfg.repetition_penalty,
                       seed=hash((cfg.seed, first)) & 0x7FFFFFFF)
        completions = self.backend.complete(prompts, dec)
        new: list[Candidate] = []
        for k, comp in enumerate(completions):
            if comp.finish_reason == "length":
                self.state.reasons["truncated_response"] += 1
            for text in parse_instruction_list(comp.text, comp.finish_reason):
                self._consider(text, first + k, new)
        if new:
            self._classify(new)
            self._instances(new)
        return new

    def _classify(self, cands: list[Candidate]) -> None:
        dec = Decoding(max_tokens=3, temperature=0.0, stop=("\n", "Task"))
        answers = self.backend.complete([si_prompts.classification_prompt(c.instruction) for c in cands], dec)
        for c, a in zip(cands, answers):
            c.is_classification = si_prompts.is_yes(a.text)

    def _instances(self, cands: list[Candidate]) -> None:
        dec = Decoding(max_tokens=self.cfg.instance_max_tokens, temperature=0.0, stop=si_prompts.INSTANCE_STOP,
                       presence_penalty=1.5, repetition_penalty=self.cfg.repetition_penalty)
        outs = self.backend.complete([si_prompts.instance_prompt(c.instruction, c.is_classification)
                                      for c in cands], dec)
        for c, comp in zip(cands, outs):
            parse = parse_classification_instances if c.is_classification else parse_generation_instances
            c.instances = parse(comp.text)
            c.truncated = comp.finish_reason == "length"

    def _round_alpaca(self) -> list[Candidate]:
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
        for k, comp in enumerate(self.backend.complete(prompts, dec)):
            for instruction, inst in parse_alpaca(comp.text, comp.finish_reason, cfg.alpaca_num_seeds + 1):
                cand = self._consider(instruction, first + k, new)
                if cand is not None:
                    cand.instances = [inst]
        return new

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
            with open(self.out, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
        self.records += records
        _save_state(self.out, self.state)

    def run(self) -> Result:
        cfg = self.cfg
        bar = tqdm(total=cfg.num, initial=min(len(self.records), cfg.num), desc=f"{cfg.style}", unit="instr",
                   disable=not cfg.progress, dynamic_ncols=True)
        stalled = 0
        try:
            while len(self.records) < cfg.num:
                new = self._round_alpaca() if cfg.style == "alpaca" else self._round_self_instruct()
                kept = self._finish(new, cfg.num - len(self.records))
                self.state.request_idx += cfg.prompts_per_round
                self.state.rounds += 1
                self._append(kept)
                bar.update(len(kept))
                bar.set_postfix_str(_postfix(self.state), refresh=False)
                stalled = 0 if kept else stalled + 1
                if stalled >= cfg.max_rounds_without_progress:
                    raise WorkbenchError(
                        f"no instruction accepted in {stalled} rounds ({dict(self.state.reasons)}); "
                        f"{len(self.records)} records are in {self.out}. Try another model or --api-base.")
        finally:
            bar.close()
        from workbench.instruct.stats import report

        stats = report(self.records, self.state, cfg)
        return Result(self.out, self.records, self.state, stats)


def _postfix(state: RunState) -> str:
    return " ".join(f"{k}={v}" for k, v in state.reasons.most_common(6))


def generate(cfg: SelfInstructConfig, backend: Backend | None = None) -> Result:
    """Run (or resume) self-instruct generation. `backend` defaults to the local offline model."""
    if backend is None:
        from workbench.instruct.backends import LocalBackend

        backend = LocalBackend.load()
    return Generator(cfg, backend).run()
