"""Scoring with an existing open PRM ("bring your own PRM"), as it was trained, without Stepwise's
own head. Two layouts of the field:

* ``qwen-prm`` (Qwen2.5-Math-PRM): a Qwen2 decoder whose checkpoint also holds a two-class head
  ``score`` (Linear → ReLU → Linear). The problem is the user turn of the chat template; the
  steps follow in the assistant turn, each ended by the separator token ``<extra_0>``, where
  P(good step) = softmax(head)[1].
* ``math-shepherd``: a plain causal LM. ``problem Step 1: … ки\\nStep 2: … ки``, tokenized as
  one text as the authors' model card does (its Mistral SentencePiece tokenizer would put a
  ``▁`` at the start of each separately tokenized piece); at each tag ``ки``, P(good step) =
  softmax over the ``+`` and ``-`` next-token logits, the ``+`` part.

The head is applied only at the step positions (never a vocabulary-wide logits tensor over every
token). A selector version of an imported PRM is a directory with one file, ``ADAPTER_FILE``
(``{"adapter", "model"}``): the weights stay where they are. Both layouts are causal decoders,
so the windows of ``prm.encode_many`` apply unchanged.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from selector.ml.prm import Layout, _quiet_transformers, special_affixes

ADAPTER_FILE = "stepwise_adapter.json"
QWEN_PRM = "qwen-prm"
MATH_SHEPHERD = "math-shepherd"
ADAPTERS = (QWEN_PRM, MATH_SHEPHERD)
QWEN_STEP_SEPARATOR = "<extra_0>"
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
SHEPHERD_TAG = "ки"
SHEPHERD_GOOD_BAD = "+ -"  # tokenized together, as the Math-Shepherd authors read them


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_FILE).is_file()


def adapter_model_path(path: str | Path) -> str:
    return str(json.loads((Path(path) / ADAPTER_FILE).read_text())["model"])


def _single_token(tokenizer: Any, text: str, *, what: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{what} {text!r} is not a single token of this tokenizer ({ids})")
    return int(ids[0])


def _shepherd_candidates(tokenizer: Any) -> tuple[int, int]:
    ids = tokenizer(SHEPHERD_GOOD_BAD, add_special_tokens=False)["input_ids"]
    if len(ids) != 2:
        raise ValueError(f"{SHEPHERD_GOOD_BAD!r} should be two tokens (+, -), got {ids}")
    return int(ids[0]), int(ids[1])


def _safetensors_keys(path: Path, prefix: str) -> dict[str, Path]:
    """Which file holds each tensor named ``prefix…`` (one file or a sharded index)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {k: path / f for k, f in weight_map.items() if k.startswith(prefix)}
    single = path / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{path}: no model.safetensors (or index) to read the head from")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as f:
        return {k: single for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118


def adapter_check(*, adapter: str, model_path: str | Path) -> dict[str, Any]:
    """Cheap checks (config, tokenizer, head tensors; no weights loaded) that ``model_path``
    has the layout ``adapter`` expects. Returns facts for the version's summary."""
    from transformers import AutoConfig, AutoTokenizer

    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter {adapter!r}: expected one of {', '.join(ADAPTERS)}")
    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model_path!r} is not a local model directory (no config.json)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    facts: dict[str, Any] = {"adapter": adapter, "model_type": config.model_type}
    if adapter == QWEN_PRM:
        if config.model_type != "qwen2":
            raise ValueError(f"{model_path}: the {QWEN_PRM} adapter needs a qwen2 model")
        facts["step_token_id"] = _single_token(
            tokenizer, QWEN_STEP_SEPARATOR, what="step separator"
        )
        head = sorted(_safetensors_keys(path, "score."))
        if head != ["score.0.bias", "score.0.weight", "score.2.bias", "score.2.weight"]:
            raise ValueError(f"{model_path}: expected a two-layer 'score' head, found {head}")
    else:
        # Sentencepiece reads "ки" as "▁ки"; a byte-level BPE needs the space spelled out.
        try:
            tag = _single_token(tokenizer, SHEPHERD_TAG, what="step tag")
        except ValueError:
            tag = _single_token(tokenizer, " " + SHEPHERD_TAG, what="step tag")
        facts["step_token_id"] = tag
        facts["good_bad_token_ids"] = list(_shepherd_candidates(tokenizer))
    return facts


def adapter_write(*, adapter: str, model_path: str | Path, output_dir: str | Path) -> dict:
    """Make ``output_dir`` a selector checkpoint that scores with ``model_path`` through
    ``adapter``. Checks the layout first; writes nothing when it does not fit."""
    facts = adapter_check(adapter=adapter, model_path=model_path)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{ADAPTER_FILE}.tmp"
    tmp.write_text(json.dumps({"adapter": adapter, "model": str(Path(model_path).resolve())}))
    os.replace(tmp, out / ADAPTER_FILE)
    return facts


class QwenPRMReadout:
    """The Qwen2.5-Math-PRM head on the base model's hidden states at the separator tokens."""

    def __init__(self, head: Any) -> None:
        self.head = head

    def good_probability(self, model: Any, tensors: dict[str, Any], rows: Any, cols: Any) -> Any:
        hidden = model(**tensors).last_hidden_state[rows, cols]
        logits = self.head(hidden.to(self.head[0].weight.dtype))
        return logits.float().softmax(dim=-1)[:, 1]


class ShepherdReadout:
    """P(+) against P(-) from the LM head, applied at the tag positions only."""

    def __init__(self, good: int, bad: int) -> None:
        self.ids = [good, bad]

    def good_probability(self, model: Any, tensors: dict[str, Any], rows: Any, cols: Any) -> Any:
        hidden = model.base_model(**tensors).last_hidden_state[rows, cols]
        logits = model.get_output_embeddings()(hidden)[:, self.ids]
        return logits.float().softmax(dim=-1)[:, 0]


# A model's chat template is code its files bring: rendering one problem takes far less than
# this, and a template that loops for longer is stopped with ``ChatTemplateTimeout``.
CHAT_TEMPLATE_SECONDS = 10.0


class ChatTemplateTimeout(RuntimeError):
    """The model's chat template ran past its time limit (a loop that does not end)."""


def _with_deadline(render: Callable[[], str], *, seconds: float, what: str) -> str:
    """``render()``, stopped by ``ChatTemplateTimeout`` once it has run ``seconds``.

    The time is checked at every Python call, and at every line of the compiled template's own
    code (Jinja compiles a template to Python, so each turn of a template loop is a line). No
    signal and no thread: it works in any thread, and a cancelled job's worker is back within
    the limit. The tracer that was set before (a debugger, coverage) is put back after.
    """
    deadline = time.monotonic() + seconds

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise ChatTemplateTimeout(
                f"{what} ran longer than {seconds:g} s (a loop that does not end?); it was "
                "stopped. Fix or remove the chat template in the model's tokenizer files."
            )
        # Line events only in template code (Jinja names it "<template>" or the file's name).
        return tracer if frame.f_code.co_filename.endswith(("<template>", ".jinja")) else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        return render()
    finally:
        sys.settrace(previous)


def _qwen_problem_text(tokenizer: Any) -> Any:
    @functools.lru_cache(maxsize=4096)
    def render(problem: str) -> str:
        if not getattr(tokenizer, "chat_template", None):
            return problem + "\n"
        messages = [
            {"role": "system", "content": QWEN_SYSTEM},
            {"role": "user", "content": problem},
        ]
        text = _with_deadline(
            lambda: tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            ),
            seconds=CHAT_TEMPLATE_SECONDS,
            what="the model's chat template",
        )
        return str(text)

    return render


def _shepherd_step_text(index: int, step: str) -> str:
    return ("\n" if index else "") + f"Step {index + 1}: {step}"


def _shepherd_problem_text(problem: str) -> str:
    return problem + " "


def adapter_load(path: str | Path, *, device: str, dtype: Any) -> tuple[Any, Any, Layout, Any]:
    """(model on device, tokenizer, layout, readout) for an ``adapter_write`` directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2Model

    from selector.ml.devices import attn_implementation

    spec = json.loads((Path(path) / ADAPTER_FILE).read_text())
    adapter, model_path = spec["adapter"], Path(spec["model"])
    facts = adapter_check(adapter=adapter, model_path=model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prefix, suffix = special_affixes(tokenizer)
    readout: Any
    model: Any
    with _quiet_transformers():
        if adapter == QWEN_PRM:
            # The concrete classes, not the checkpoint's remote code: no code from the model
            # directory runs here.
            config = Qwen2Config.from_pretrained(model_path)
            model = Qwen2Model.from_pretrained(
                model_path,
                config=config,
                dtype=dtype,
                attn_implementation=attn_implementation(device),
            )
            head = torch.nn.Sequential(
                torch.nn.Linear(config.hidden_size, config.hidden_size),
                torch.nn.ReLU(),
                torch.nn.Linear(config.hidden_size, 2),
            )
            state = {}
            from safetensors import safe_open

            for key, file in _safetensors_keys(model_path, "score.").items():
                with safe_open(str(file), framework="pt") as f:
                    state[key.removeprefix("score.")] = f.get_tensor(key)
            head.load_state_dict(state)
            readout = QwenPRMReadout(head.to(device=device, dtype=dtype).eval())
            layout = Layout(
                step_id=facts["step_token_id"],
                prefix=prefix,
                suffix=suffix,
                problem_text=_qwen_problem_text(tokenizer),
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(
                model_path, dtype=dtype, attn_implementation=attn_implementation(device)
            )
            readout = ShepherdReadout(*facts["good_bad_token_ids"])
            layout = Layout(
                step_id=facts["step_token_id"],
                prefix=prefix,
                suffix=suffix,
                problem_text=_shepherd_problem_text,
                step_text=_shepherd_step_text,
                tag_text=" " + SHEPHERD_TAG,  # one text, as the authors tokenize it
            )
    model.config.use_cache = False
    model = model.to(device)
    return model, tokenizer, layout, readout
