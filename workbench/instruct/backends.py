"""Text generators behind one interface: a local transformers model, or any OpenAI-compatible HTTP server
(`/v1/completions`: vLLM, TGI, llama.cpp's server, or `workbench instruct serve`)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from workbench.errors import WorkbenchError

DEFAULT_MODEL = "smollm2-135m"


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


class LocalBackend:
    """Batched generation with a transformers causal LM; prompts are left-padded within a batch."""

    def __init__(self, model, tokenizer, name: str = "local", batch_size: int = 8, chat: bool = False,
                 max_prompt_tokens: int | None = None, threads: int | None = None):
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

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, **kwargs) -> LocalBackend:
        from workbench.models import load_backbone

        bb = load_backbone(model, kind="causal")
        return cls(bb.model, bb.tokenizer, name=model, **kwargs)

    def _format(self, prompt: str) -> str:
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def complete(self, prompts: list[str], decoding: Decoding) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(prompts), self.batch_size):
            out += self._complete_batch(prompts[start:start + self.batch_size], decoding)
        return out

    def _complete_batch(self, prompts: list[str], d: Decoding) -> list[Completion]:
        import torch

        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # generation continues from the right end
        try:
            enc = tok([self._format(p) for p in prompts], return_tensors="pt", padding=True,
                      add_special_tokens=not self.chat)
        finally:
            tok.padding_side = side
        if self.max_prompt_tokens and enc["input_ids"].shape[1] > self.max_prompt_tokens:
            enc = {k: v[:, -self.max_prompt_tokens:] for k, v in enc.items()}
        kwargs = dict(max_new_tokens=d.max_tokens, pad_token_id=tok.pad_token_id)
        if d.temperature > 0:
            kwargs.update(do_sample=True, temperature=d.temperature, top_p=d.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False)
        if d.repetition_penalty:
            kwargs["repetition_penalty"] = d.repetition_penalty
        if d.stop:
            kwargs.update(stop_strings=list(d.stop), tokenizer=tok)
        if d.seed is not None:
            torch.manual_seed(d.seed)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1]:]
        eos_cfg = self.model.generation_config.eos_token_id
        eos = set(eos_cfg if isinstance(eos_cfg, list) else [] if eos_cfg is None else [eos_cfg])
        if tok.eos_token_id is not None:
            eos.add(tok.eos_token_id)
        results = []
        for row in new.tolist():
            ended = next((k for k, t in enumerate(row) if t in eos), None)
            ids = row if ended is None else row[:ended]
            text, stopped = cut_at_stop(tok.decode(ids, skip_special_tokens=True), d.stop)
            finished = stopped or ended is not None or len(row) < d.max_tokens
            results.append(Completion(text, "stop" if finished else "length"))
        return results


class HTTPBackend:
    """An OpenAI-compatible `/completions` endpoint; one request per prompt, a few in flight at once."""

    def __init__(self, api_base: str, model: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 4, timeout: float = 300.0, retries: int = 3):
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self._headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise WorkbenchError(f"--api-key-env {api_key_env}: that environment variable is not set")
            self._headers["Authorization"] = f"Bearer {key}"
        self.model = model or self._first_model()
        self.name = f"{self.model}@{self.api_base}"

    def _request(self, path: str, payload: dict | None = None) -> dict:
        url = f"{self.api_base}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        last: Exception | None = None
        for attempt in range(self.retries):
            req = urllib.request.Request(url, data=data, headers=self._headers,
                                         method="POST" if data is not None else "GET")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as e:
                body = e.read().decode(errors="replace")[:300]
                if e.code in (429, 500, 502, 503, 504) and attempt + 1 < self.retries:
                    last = e
                    time.sleep(2 ** attempt)
                    continue
                raise WorkbenchError(f"{url}: HTTP {e.code}: {body}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = e
                if attempt + 1 < self.retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise WorkbenchError(f"cannot reach {url}: {reason}") from None
            except json.JSONDecodeError:
                raise WorkbenchError(f"{url}: the response is not JSON") from None
        raise WorkbenchError(f"{url}: failed after {self.retries} attempts ({last})")

    def _first_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise WorkbenchError(f"{self.api_base}/models lists no model; pass --model")
        return models[0]["id"]

    def _one(self, prompt: str, d: Decoding) -> Completion:
        payload = {"model": self.model, "prompt": prompt, "max_tokens": d.max_tokens, "temperature": d.temperature,
                   "top_p": d.top_p, "presence_penalty": d.presence_penalty,
                   "frequency_penalty": d.frequency_penalty}
        if d.stop:
            payload["stop"] = list(d.stop)[:4]  # the OpenAI API accepts at most 4
        if d.seed is not None:
            payload["seed"] = d.seed
        body = self._request("/completions", payload)
        try:
            choice = body["choices"][0]
            text = choice["text"]
        except (KeyError, IndexError, TypeError):
            raise WorkbenchError(f"{self.api_base}/completions: unexpected response {str(body)[:200]}") from None
        # Servers that ignore `stop` still get the same cut.
        text, _ = cut_at_stop(text, d.stop)
        return Completion(text, choice.get("finish_reason") or "stop")

    def complete(self, prompts: list[str], decoding: Decoding) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(prompts)))) as pool:
            return list(pool.map(lambda p: self._one(p, decoding), prompts))
