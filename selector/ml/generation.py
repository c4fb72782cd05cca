"""Sampling candidate solutions from a causal language model: vLLM when it is installed (the
``gen`` extra), transformers ``generate`` otherwise. Plain PyTorch/transformers, no Django.

Both backends do plain temperature sampling over the whole vocabulary (no top-k, no top-p, no
repetition penalty), whatever defaults the model's generation config carries, so the two give
samples from the same distribution and a run's settings are the ones recorded in its job.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol

Backend = Literal["auto", "vllm", "transformers"]


@dataclasses.dataclass(frozen=True)
class Sampling:
    n: int  # samples per prompt
    temperature: float  # 0: greedy (then n must be 1)
    max_new_tokens: int
    seed: int | None = None


class Sampler(Protocol):
    backend: str
    generated_tokens: int  # new tokens produced so far, EOS included

    def sample(self, prompts: Sequence[str], sampling: Sampling) -> list[list[str]]:
        """``sampling.n`` completions (the text after the prompt) for each prompt, in order."""
        ...

    def close(self) -> None:
        """Free the model (and its GPU memory) before the same process loads another."""
        ...


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def sampler_load(path: str, *, device: str, backend: Backend = "auto") -> Sampler:
    """A sampler over the model in directory ``path`` on ``device`` ("cpu", "cuda", "cuda:N").

    "auto" takes vLLM when it is installed and the device is a GPU (vLLM needs one)."""
    if backend == "vllm" or (backend == "auto" and device.startswith("cuda") and vllm_available()):
        return VllmSampler(path)
    return TransformersSampler(path, device=device)


class TransformersSampler:
    backend = "transformers"

    def __init__(self, path: str, *, device: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from selector.ml.devices import inference_dtype

        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Left padding: every prompt in a batch then ends where generation starts.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"{path}: the tokenizer has neither a pad nor an EOS token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=inference_dtype(device))
        self.model = model.to(device).eval()
        self.generated_tokens = 0

    def sample(self, prompts: Sequence[str], sampling: Sampling) -> list[list[str]]:
        import torch

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        encoded = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.device)
        greedy = sampling.temperature == 0
        options: dict[str, Any] = (
            {"do_sample": False}
            if greedy
            else {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_k": 0,
                "top_p": 1.0,
            }
        )
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                **options,
                repetition_penalty=1.0,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=sampling.n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = output[:, encoded["input_ids"].shape[1] :].tolist()
        self.generated_tokens += sum(_length(row, self._stop_ids) for row in new)
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [texts[i * sampling.n : (i + 1) * sampling.n] for i in range(len(prompts))]

    @property
    def _stop_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids | {self.tokenizer.pad_token_id}

    def close(self) -> None:
        del self.model
        _free_memory(self.device)


def _length(row: list[int], stop: set[int]) -> int:
    """Tokens generated in ``row``: up to and including the first EOS (the rest is padding)."""
    for i, token in enumerate(row):
        if token in stop:
            return i + 1
    return len(row)


class VllmSampler:
    backend = "vllm"

    def __init__(self, path: str) -> None:
        from vllm import LLM

        self.llm = LLM(model=path)
        self.generated_tokens = 0

    def sample(self, prompts: Sequence[str], sampling: Sampling) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=1.0,
            top_k=-1,
            repetition_penalty=1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        results = self.llm.generate(list(prompts), params, use_tqdm=False)
        self.generated_tokens += sum(
            len(out.token_ids) for result in results for out in result.outputs
        )
        return [[out.text for out in result.outputs] for result in results]

    def close(self) -> None:
        del self.llm
        try:  # vLLM keeps a process group of its own; without it the GPU memory stays held
            from vllm.distributed.parallel_state import destroy_model_parallel

            destroy_model_parallel()
        except ImportError:
            pass
        _free_memory("cuda")


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def samples_generate(
    sampler: Sampler,
    prompts: Sequence[str],
    sampling: Sampling,
    *,
    sequences_per_call: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(prompt index, its n samples)`` for every prompt, a batch of prompts per model
    call (about ``sequences_per_call`` sequences each); ``progress(samples done, total)``."""
    per_call = max(1, sequences_per_call // sampling.n)
    total = len(prompts) * sampling.n
    done = 0
    for start in range(0, len(prompts), per_call):
        batch = prompts[start : start + per_call]
        step = sampling
        if sampling.seed is not None:
            # A batch's seed depends only on where it starts: a rerun repeats its samples.
            step = dataclasses.replace(sampling, seed=sampling.seed + start)
        for offset, samples in enumerate(sampler.sample(batch, step)):
            yield start + offset, samples
        done += len(batch) * sampling.n
        if progress is not None:
            progress(done, total)
