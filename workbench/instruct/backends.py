"""Text generators behind one interface: a local transformers model, or any OpenAI-compatible HTTP server
(`/v1/completions`: vLLM, TGI, llama.cpp's server, or `workbench instruct serve`)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from workbench.errors import ConfigError, WorkbenchError

DEFAULT_MODEL = "smollm2-135m"
MIN_SHARED_PREFIX = 32  # tokens: a shorter shared start costs more to copy per batch than it saves


@dataclass(frozen=True)
class Decoding:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0  # sent to HTTP servers; transformers has no exact equivalent
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None  # local backend only (HF's multiplicative penalty)
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (stop string or end of text) or "length"


class Backend(Protocol):
    name: str

    def complete(self, prompts: list[str], decoding: Decoding) -> list[Completion]: ...


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut at the earliest stop string, as OpenAI-style servers do (the stop string is not returned)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def resolve_local_model(model: str, flag: str = "--model"):
    """The model's reference (config only, no weights), so a bad name fails before anything loads."""
    from workbench.instruct.checks import model_name
    from workbench.models.backbone import resolve_model

    model_name(flag, model)
    try:
        return resolve_model(model, "causal")
    except WorkbenchError as e:
        raise ConfigError(f"{flag}: {str(e).splitlines()[0]}") from None


def _progress_criteria(hook, prompt_len: int, limit: int):
    """A stopping criterion that never stops: it reports the tokens generated so far (for the progress bar)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Progress(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            hook(int(input_ids.shape[1]) - prompt_len, limit)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Progress()])


class LocalBackend:
    """Batched generation with a transformers causal LM; prompts are left-padded within a batch."""

    def __init__(self, model, tokenizer, name: str = "local", batch_size: int = 8, chat: bool = False,
                 max_prompt_tokens: int | None = None, threads: int | None = None, prefix_cache: bool = True):
        from workbench.instruct import checks as C

        C.integer("--batch-size", batch_size, lo=1)
        if threads is not None:
            C.integer("--threads", threads, lo=1, hi=max(1, os.cpu_count() or 1) * 4)
        if threads:
            import torch

            # On a shared CPU, fewer threads than cores avoids OpenMP spin contention (10x here under load).
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        # Self-Instruct prompts a base model with raw text; a chat model can get them as one user turn.
        self.chat = chat
        self.max_prompt_tokens = max_prompt_tokens
        # Prompts of one call that start with the same MIN_SHARED_PREFIX+ tokens read that start once.
        self.prefix_cache = prefix_cache
        # Called as progress_hook(tokens generated, max tokens) while a batch generates (the progress bar).
        self.progress_hook = None

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, **kwargs) -> LocalBackend:
        from workbench.models import load_backbone

        ref = resolve_local_model(model)
        bb = load_backbone(ref, kind="causal")
        return cls(bb.model, bb.tokenizer, name=model, **kwargs)

    def _format(self, prompt: str) -> str:
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def complete(self, prompts: list[str], decoding: Decoding) -> list[Completion]:
        texts = [self._format(p) for p in prompts]
        shared = self._shared_prefix(texts) if self.prefix_cache else None
        if shared is not None:
            return self._complete_shared(shared, decoding)
        out: list[Completion] = []
        for start in range(0, len(texts), self.batch_size):
            out += self._complete_batch(texts[start:start + self.batch_size], decoding)
        return out

    def _complete_batch(self, texts: list[str], d: Decoding) -> list[Completion]:
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # generation continues from the right end
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not self.chat)
        finally:
            tok.padding_side = side
        if self.max_prompt_tokens and enc["input_ids"].shape[1] > self.max_prompt_tokens:
            enc = {k: v[:, -self.max_prompt_tokens:] for k, v in enc.items()}
        return self._generate(dict(enc), d)

    # -- the shared-prefix cache -------------------------------------------------------------------------------
    # Few-shot prompts repeat the same demonstrations (often 1,000+ tokens) before every question. Their keys and
    # values are computed once; each batch starts from a copy of them and reads only its questions. A batch is
    # laid out as [prefix][padding][question], the padding masked out and positions counted over real tokens
    # only, which is exactly what each row sees in a left-padded batch of the full prompts.

    def _shared_prefix(self, texts: list[str]) -> tuple[list[int], list[list[int]]] | None:
        """(shared prefix ids, each prompt's remaining ids) when the prompts share enough leading tokens."""
        import os.path

        # Tokens shared are at most the characters shared plus a leading special token: most calls (no shared
        # demonstrations) are turned away here, before their prompts are tokenized a second time.
        if len(texts) < 2 or len(os.path.commonprefix(texts)) + 1 < MIN_SHARED_PREFIX:
            return None
        ids = [self.tokenizer(t, add_special_tokens=not self.chat)["input_ids"] for t in texts]
        if self.max_prompt_tokens and max(map(len, ids)) > self.max_prompt_tokens:
            return None  # cut prompts lose their start: nothing shared is left to cache
        n = 0
        for column in zip(*ids):
            if any(t != column[0] for t in column):
                break
            n += 1
        n = min(n, min(map(len, ids)) - 1)  # every row keeps at least one token to read
        if n < MIN_SHARED_PREFIX:
            return None
        return ids[0][:n], [row[n:] for row in ids]

    def _sliding_window_bound(self, longest: int, d: Decoding) -> bool:
        """Whether a sliding-window layer (Gemma 3, Mistral) would see padding inside its window: then only
        questions of equal length share a batch, so no padding is needed at all."""
        from workbench.models.backbone import sliding_window

        window = sliding_window(self.model)
        return window is not None and longest + d.max_tokens > window

    def _complete_shared(self, shared: tuple[list[int], list[list[int]]], d: Decoding) -> list[Completion]:
        import copy

        import torch

        from workbench.models.backbone import cache_keyword, new_cache

        prefix, rests = shared
        cache = new_cache(self.model)
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([prefix]), use_cache=True, **{cache_keyword(self.model): cache})
        order = sorted(range(len(rests)), key=lambda i: len(rests[i]))  # similar lengths, little padding
        if self._sliding_window_bound(len(prefix) + max(map(len, rests)), d):
            groups: dict[int, list[int]] = {}
            for i in order:
                groups.setdefault(len(rests[i]), []).append(i)
            batches = [g[s:s + self.batch_size] for g in groups.values() for s in range(0, len(g), self.batch_size)]
        else:
            batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out: list[Completion | None] = [None] * len(rests)
        for rows in batches:
            width = max(len(rests[i]) for i in rows)
            ids = torch.full((len(rows), len(prefix) + width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            ids[:, :len(prefix)] = torch.tensor(prefix)
            mask[:, :len(prefix)] = 1
            for r, i in enumerate(rows):
                ids[r, ids.shape[1] - len(rests[i]):] = torch.tensor(rests[i])
                mask[r, ids.shape[1] - len(rests[i]):] = 1
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(rows))
            greedy = d.temperature == 0 and not d.repetition_penalty
            done = self._greedy(ids, mask, past, d) if greedy else \
                self._generate({"input_ids": ids, "attention_mask": mask}, d, past)
            for i, c in zip(rows, done):
                out[i] = c
        return out  # type: ignore[return-value]

    def _greedy(self, ids, mask, past, d: Decoding) -> list[Completion]:
        """Greedy decoding from a batch whose shared prefix is in `past`, that drops each row from the batch as soon
        as it ends (end of text or a stop string). `generate` keeps computing every row until the last one ends:
        in CoT evaluation most answers end within a few dozen tokens while one row runs on to the limit, and
        each step of that tail then costs a whole batch. The tokens chosen are the same: argmax of the same
        logits, each row attending to the same keys at the same positions."""
        import torch

        from workbench.models.backbone import cache_keyword

        cache = {cache_keyword(self.model): past}  # filled in place by every forward below
        tok, eos = self.tokenizer, self._eos_ids()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # over real tokens only, as generate counts them
        start = past.get_seq_length()
        alive = list(range(ids.shape[0]))  # rows still in the batch, by their index in `ids`
        tokens: list[list[int]] = [[] for _ in alive]
        stopped = [False] * len(alive)
        with torch.inference_mode():
            logits = self.model(input_ids=ids[:, start:], attention_mask=mask, position_ids=positions[:, start:],
                                use_cache=True, logits_to_keep=1, **cache).logits[:, -1]
            position = positions[:, -1]
            for step in range(d.max_tokens):
                chosen = logits.float().argmax(-1).tolist()
                keep = []
                for j, row in enumerate(alive):
                    if chosen[j] in eos:
                        stopped[row] = True
                        continue
                    tokens[row].append(chosen[j])
                    if d.stop and any(s in tok.decode(tokens[row], skip_special_tokens=True) for s in d.stop):
                        stopped[row] = True
                        continue
                    keep.append(j)
                if self.progress_hook is not None:
                    self.progress_hook(step + 1, d.max_tokens)
                if not keep or step + 1 == d.max_tokens:
                    break
                if len(keep) < len(alive):  # finished rows leave the batch, and their keys and values with them
                    index = torch.tensor(keep)
                    past.batch_select_indices(index)
                    mask, position = mask[index], position[index]
                    alive = [alive[j] for j in keep]
                    chosen = [chosen[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
                position = position + 1
                logits = self.model(input_ids=torch.tensor(chosen)[:, None], attention_mask=mask,
                                    position_ids=position[:, None], use_cache=True, logits_to_keep=1,
                                    **cache).logits[:, -1]
        results = []
        for row, ended in zip(tokens, stopped):
            text, cut = cut_at_stop(tok.decode(row, skip_special_tokens=True), d.stop)
            results.append(Completion(text, "stop" if ended or cut or len(row) < d.max_tokens else "length"))
        return results

    def _eos_ids(self) -> set[int]:
        eos_cfg = self.model.generation_config.eos_token_id
        eos = set(eos_cfg if isinstance(eos_cfg, list) else [] if eos_cfg is None else [eos_cfg])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        return eos

    # -- generation --------------------------------------------------------------------------------------------

    def _generate(self, enc: dict, d: Decoding, past=None) -> list[Completion]:
        import torch

        tok = self.tokenizer
        kwargs = dict(max_new_tokens=d.max_tokens, pad_token_id=tok.pad_token_id)
        if past is not None:
            from workbench.models.backbone import cache_keyword

            kwargs[cache_keyword(self.model)] = past
        if d.temperature > 0:
            kwargs.update(do_sample=True, temperature=d.temperature, top_p=d.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False)
        if d.repetition_penalty:
            kwargs["repetition_penalty"] = d.repetition_penalty
        if d.stop:
            kwargs.update(stop_strings=list(d.stop), tokenizer=tok)
        if self.progress_hook is not None:
            prompt_len = enc["input_ids"].shape[1]
            kwargs["stopping_criteria"] = _progress_criteria(self.progress_hook, prompt_len, d.max_tokens)
        if d.seed is not None:
            torch.manual_seed(d.seed)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1]:]
        eos = self._eos_ids()
        results = []
        for row in new.tolist():
            ended = next((k for k, t in enumerate(row) if t in eos), None)
            ids = row if ended is None else row[:ended]
            text, stopped = cut_at_stop(tok.decode(ids, skip_special_tokens=True), d.stop)
            finished = stopped or ended is not None or len(row) < d.max_tokens
            results.append(Completion(text, "stop" if finished else "length"))
        return results


DEFAULT_TIMEOUT = 60.0  # seconds one HTTP attempt may take (connect, first byte, whole answer)
DEFAULT_RETRIES = 2  # further attempts after a timeout, a dropped connection, HTTP 429 or 5xx
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what a shell accepts as a variable name
SHOWN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # OPENAI_API_KEY: safe to repeat in a message
_RETRY_CODES = (429, 500, 502, 503, 504)


class _Redirected(WorkbenchError):
    pass


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would send the Authorization header to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise _Redirected(f"{req.full_url}: the server redirects (HTTP {code}) to {newurl}; redirects are not "
                          f"followed, so the API key never leaves --api-base: pass the final address as --api-base")


def check_api_base(api_base: str) -> str:
    from urllib.parse import urlsplit

    expected = "an http:// or https:// URL such as http://127.0.0.1:8000/v1"
    if not isinstance(api_base, str) or not api_base.strip():
        raise ConfigError(f"--api-base: {api_base!r} is not allowed; expected {expected}")
    try:
        parts = urlsplit(api_base.strip())
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as e:
        raise ConfigError(f"--api-base: {api_base!r} is not allowed; expected {expected} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--api-base: {api_base!r} is not allowed; expected {expected}")
    if parts.username or parts.password:
        raise ConfigError(f"--api-base: {api_base!r} is not allowed; expected a URL without a user or password "
                          f"(pass the key with --api-key-env)")
    if parts.query or parts.fragment:
        raise ConfigError(f"--api-base: {api_base!r} is not allowed; expected a URL without ?query or #fragment")
    del port
    return api_base.strip().rstrip("/")


class HTTPBackend:
    """An OpenAI-compatible `/completions` endpoint; one request per prompt, a few in flight at once.

    Each attempt gets `timeout` seconds; a timeout, a dropped connection, HTTP 429 or 5xx is retried up to
    `retries` times (1 s, 2 s, 4 s ... apart), so one request takes at most about timeout x (retries + 1)
    plus the pauses. Once a request has failed for good, the others of the batch stop too. Redirects are
    refused (urllib would forward the Authorization header to the new host).
    """

    def __init__(self, api_base: str, model: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 4, timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES):
        from workbench.instruct import checks as C

        self.api_base = check_api_base(api_base)
        self.timeout = C.number("--timeout", timeout, lo=0, lo_open=True, what="seconds per HTTP attempt")
        self.retries = C.integer("--retries", retries, lo=0, hi=10)
        self.concurrency = C.integer("--concurrency", concurrency, lo=1, hi=256)
        self._headers = {"Content-Type": "application/json"}
        if api_key_env is not None:
            if not api_key_env.strip():
                raise ConfigError("--api-key-env: '' is not allowed; expected the name of an environment variable")
            # The value may be the key itself, given by mistake: it is named in a message only when it reads as a
            # conventional variable name (upper case, digits, underscores), which a key hardly ever is
            if not ENV_NAME.fullmatch(api_key_env):
                raise ConfigError("--api-key-env: the value is not the name of an environment variable (it is not "
                                  "shown: it may be the key itself); put the key in an environment variable and "
                                  "give its name, e.g. --api-key-env OPENAI_API_KEY")
            key = os.environ.get(api_key_env)
            if not key:
                shown = api_key_env if SHOWN_ENV_NAME.fullmatch(api_key_env) else "(the name given; not shown)"
                raise ConfigError(f"--api-key-env {shown}: that environment variable is not set (or empty)")
            self._headers["Authorization"] = f"Bearer {key}"
        self.model = model or self._first_model()
        self.name = f"{self.model}@{self.api_base}"

    @property
    def _opener(self):
        opener = getattr(self, "_opener_cache", None)
        if opener is None:
            opener = self._opener_cache = urllib.request.build_opener(_RefuseRedirects)
        return opener

    def _attempt(self, req: urllib.request.Request) -> bytes:
        """One request, the whole answer within `timeout` seconds (read in pieces, the clock checked between)."""
        deadline = time.monotonic() + self.timeout
        with self._opener.open(req, timeout=self.timeout) as resp:
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("timed out")
                chunk = resp.read1(65536)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise WorkbenchError(f"{req.full_url}: the answer is larger than {MAX_RESPONSE_BYTES >> 20} MiB")
                chunks.append(chunk)

    def _request(self, path: str, payload: dict | None = None, abort: threading.Event | None = None) -> dict:
        url = f"{self.api_base}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        attempts = self.retries + 1
        for attempt in range(attempts):
            if abort is not None and abort.is_set():
                raise WorkbenchError(f"{url}: cancelled, another request failed")
            req = urllib.request.Request(url, data=data, headers=self._headers,
                                         method="POST" if data is not None else "GET")
            try:
                body = self._attempt(req)
            except urllib.error.HTTPError as e:
                try:
                    text = e.read(300).decode(errors="replace")
                except OSError:
                    text = ""
                e.close()
                if e.code in _RETRY_CODES and attempt + 1 < attempts:
                    time.sleep(min(2 ** attempt, 8))
                    continue
                text = " ".join(text.split())[:200]
                raise WorkbenchError(f"{url}: HTTP {e.code}" + (f": {text}" if text else "")) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
                if attempt + 1 < attempts:
                    time.sleep(min(2 ** attempt, 8))
                    continue
                tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                if timed_out:
                    raise WorkbenchError(f"{url}: no answer within {self.timeout:g} s ({tries}); is the server "
                                         f"busy? raise --timeout or --retries") from None
                raise WorkbenchError(f"cannot reach {url}: {reason} ({tries})") from None
            try:
                return json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise WorkbenchError(f"{url}: the response is not JSON; is --api-base an OpenAI-compatible "
                                     f"endpoint (ending in /v1)?") from None
        raise AssertionError("unreachable")

    def _first_model(self) -> str:
        body = self._request("/models")
        models = body.get("data") if isinstance(body, dict) else None
        if not isinstance(models, list) or not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise WorkbenchError(f"{self.api_base}/models lists no model; pass --model")
        return str(models[0]["id"])

    def _one(self, prompt: str, d: Decoding, abort: threading.Event | None = None) -> Completion:
        payload = {"model": self.model, "prompt": prompt, "max_tokens": d.max_tokens, "temperature": d.temperature,
                   "top_p": d.top_p, "presence_penalty": d.presence_penalty,
                   "frequency_penalty": d.frequency_penalty}
        if d.stop:
            payload["stop"] = list(d.stop)[:4]  # the OpenAI API accepts at most 4
        if d.seed is not None:
            payload["seed"] = d.seed
        body = self._request("/completions", payload, abort)
        try:
            choice = body["choices"][0]
            text = choice["text"]
            if not isinstance(text, str):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise WorkbenchError(f"{self.api_base}/completions: unexpected response {str(body)[:200]}") from None
        # Servers that ignore `stop` still get the same cut.
        text, _ = cut_at_stop(text, d.stop)
        return Completion(text, choice.get("finish_reason") or "stop")

    def complete(self, prompts: list[str], decoding: Decoding) -> list[Completion]:
        """One request per prompt, `concurrency` in flight, on daemon threads: the first failure (or Ctrl-C) returns
        at once, without waiting for requests still in flight; those stop before their next attempt."""
        n = len(prompts)
        if n == 0:
            return []
        results: list[Completion | None] = [None] * n
        errors: list[BaseException] = []
        lock = threading.Lock()
        abort, done = threading.Event(), threading.Event()
        state = {"next": 0, "left": n}

        def worker() -> None:
            while not abort.is_set():
                with lock:
                    i = state["next"]
                    if i >= n:
                        return
                    state["next"] += 1
                try:
                    results[i] = self._one(prompts[i], decoding, abort)
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    with lock:
                        errors.append(e)
                    abort.set()
                    done.set()
                    return
                with lock:
                    state["left"] -= 1
                    if state["left"] == 0:
                        done.set()

        for _ in range(max(1, min(self.concurrency, n))):
            threading.Thread(target=worker, daemon=True, name="workbench-http").start()
        try:
            done.wait()
        finally:
            abort.set()
        if errors:
            raise errors[0]
        return results  # type: ignore[return-value]
