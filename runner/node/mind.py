"""The model: a llama-cpp-python Llama, streamed token by token so a stop request abandons a generation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.errors import InputError
from runner.node.config import InstanceConfig


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    tokens: int
    seconds: float  # prompt evaluation + decoding
    stop_reason: str  # eos, length, abandoned

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens else None


def truncate(tokens: list[int], budget: int, keep_head: int = 1) -> list[int]:
    """Fit `tokens` into `budget`: keep the first `keep_head` (BOS) and the most recent rest."""
    if len(tokens) <= budget:
        return tokens
    return tokens[:keep_head] + tokens[len(tokens) - (budget - keep_head) :]


class Mind:
    """One loaded model. Not thread-safe: the cycle loop is its only user."""

    def __init__(self, cfg: InstanceConfig) -> None:
        try:
            import llama_cpp
        except ImportError as exc:  # the node venv always has it; a planning machine may not
            raise RuntimeError(f"llama_cpp is not installed: {exc}") from exc
        if not cfg.model_path.is_file():
            raise InputError(f"{cfg.source}: model_path: no model file at {cfg.model_path}")
        rt = cfg.runtime
        kwargs: dict[str, Any] = {
            "model_path": str(cfg.model_path),
            "n_ctx": rt.n_ctx,
            "n_batch": min(rt.n_batch, rt.n_ctx),
            "n_gpu_layers": rt.n_gpu_layers,
            "seed": rt.seed,
            "verbose": False,
        }
        if rt.n_threads:
            kwargs["n_threads"] = rt.n_threads
        try:
            self.llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise InputError(
                f"{cfg.source}: model_path: llama.cpp cannot load {cfg.model_path}: {exc}"
            ) from exc
        self.n_ctx = rt.n_ctx
        self.temperature, self.top_p = rt.temperature, rt.top_p

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=True))

    def generate(
        self, prompt: str, max_tokens: int, seed: int, should_stop: Callable[[], bool]
    ) -> Generation:
        tokens = truncate(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True), self.n_ctx - max_tokens)
        self.llm.set_seed(seed)
        eos = self.llm.token_eos()
        out: list[int] = []
        reason = "length"
        start = time.perf_counter()
        gen = self.llm.generate(tokens, temp=self.temperature, top_p=self.top_p, reset=True)
        try:
            for tok in gen:
                if should_stop():
                    reason = "abandoned"
                    break
                if tok == eos:
                    reason = "eos"
                    break
                out.append(tok)
                if len(out) >= max_tokens:
                    break
        finally:
            gen.close()
        seconds = time.perf_counter() - start
        text = self.llm.detokenize(out).decode("utf-8", errors="replace")
        return Generation(text, len(tokens), len(out), seconds, reason)
