"""A small base model that can read arithmetic: a digit-level tokenizer trained locally and
causal language-model pretraining on unlabeled text (no Django).

The simulation's ``ci`` preset builds its base with these two steps before any arm runs, the
same step at CI size as the PRMs of the literature starting from a base pretrained on math:

- ``digit_tokenizer_write``: a word-level vocabulary learned from the given texts, where every
  digit is its own token (a word-piece vocabulary gives ``47`` and ``48`` unrelated ids, so a
  small model cannot check ``$39 + 8 = 47$``);
- ``lm_pretrain``: a small causal BERT trained to predict the next token of texts laid out as
  the PRM reads them (``prm.encode_many``: problem, steps, a ``<step>`` token after each), so
  the PRM head starts from a model that already predicts a step's result.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selector.ml.batching import collate, plan_batches
from selector.ml.prm import (
    PAD_TOKEN,
    STEP_TOKEN,
    encode_many,
    save_pretrained_atomically,
    step_token_id,
)

CLS, SEP, UNK, MASK = "[CLS]", "[SEP]", "[UNK]", "[MASK]"


def digit_tokenizer_write(path: Path, texts: Sequence[str]) -> Any:
    """A fast word-level tokenizer over ``texts`` (words, single punctuation marks, single
    digits) with ``[CLS]`` before each text and ``<step>`` already in its vocabulary, saved
    in ``path`` so ``AutoTokenizer.from_pretrained(path)`` loads it. Returns it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD_TOKEN, UNK, CLS, SEP, MASK, STEP_TOKEN]
    raw = Tokenizer(models.WordLevel(unk_token=UNK))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(STEP_TOKEN, behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    raw.train_from_iterator(
        list(texts), trainer=trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1)
    )
    cls_id = raw.token_to_id(CLS)
    raw.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A", pair=f"{CLS} $A $B", special_tokens=[(CLS, cls_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token=PAD_TOKEN,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        additional_special_tokens=[STEP_TOKEN],
    )
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    return tokenizer


def lm_pretrain(
    *,
    tokenizer: Any,
    items: Sequence[tuple[str, Sequence[str]]],
    output_dir: Path,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    epochs: int = 2,
    learning_rate: float = 2e-3,
    max_length: int = 256,
    token_budget: int = 8192,
    replace_rate: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a causal BERT (``is_decoder=True``) from scratch on ``items`` (problem, steps) in
    the PRM's layout, and save it with ``tokenizer`` as a base model directory
    (``prm.prm_init`` puts the PRM head on it). Returns a summary.

    Two self-supervised objectives on one forward pass (ELECTRA's replaced-token detection,
    made causal, beside the language model): ``replace_rate`` of the ordinary tokens are
    swapped for another token of the same kind (a digit for a digit, a word for a word), and
    the model learns both the next *original* token and, at each position, whether the token
    there was swapped. A model that only predicts the next token holds its expectation for a
    result at the top layer, where nothing can compare it with the result written next;
    detection puts "this token does not fit what came before" where a head can read it."""
    import torch
    from transformers import BertConfig, BertLMHeadModel

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = encode_many(tokenizer, items=items, max_length=max_length)
    rows = [w.input_ids for enc in encoded for w in enc.windows]
    pad_id = int(tokenizer.pad_token_id)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max(512, max_length),
        is_decoder=True,
        pad_token_id=pad_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertLMHeadModel(config)
    detector = torch.nn.Linear(hidden_size, 1)
    model.train()
    vocab = tokenizer.get_vocab()
    special = {int(i) for i in tokenizer.all_special_ids}
    digits = sorted(vocab[d] for d in "0123456789" if d in vocab)
    words = sorted(i for i in vocab.values() if i not in special and i not in set(digits))
    kind = torch.zeros(len(tokenizer), dtype=torch.long)  # 0 special, 1 digit, 2 word
    kind[digits] = 1
    kind[words] = 2
    digit_t, word_t = torch.tensor(digits), torch.tensor(words)
    lengths = [len(r) for r in rows]
    plans = []
    for _ in range(epochs):
        order = list(range(len(rows)))
        rng.shuffle(order)
        batches = plan_batches(order, lengths, token_budget=token_budget, max_rows=64)
        plans.append(batches)
    total = sum(len(p) for p in plans)
    warmup = max(1, total // 20)
    params = [*model.parameters(), *detector.parameters()]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
        ),
    )
    losses: list[float] = []
    for plan in plans:
        loss_sum = count = 0.0
        for batch in plan:
            tensors = collate([rows[i] for i in batch], pad_id=pad_id)
            original = tensors["input_ids"]
            labels = original.clone()
            labels[tensors["attention_mask"] == 0] = -100
            kinds = kind[original]
            swap = (torch.rand(original.shape) < replace_rate) & (kinds > 0)
            # Another token of the same kind: a random offset that is never zero.
            corrupted = original.clone()
            for pool, k in ((digit_t, 1), (word_t, 2)):
                where = swap & (kinds == k)
                if where.any() and len(pool) > 1:
                    index = torch.searchsorted(pool, original[where])
                    shift = torch.randint(1, len(pool), index.shape)
                    corrupted[where] = pool[(index + shift) % len(pool)]
            out = model(
                input_ids=corrupted,
                attention_mask=tensors["attention_mask"],
                labels=labels,
                output_hidden_states=True,
            )
            detected = detector(out.hidden_states[-1]).squeeze(-1)
            mask = tensors["attention_mask"].bool() & (kinds > 0)
            rtd = torch.nn.functional.binary_cross_entropy_with_logits(
                detected[mask], swap[mask].float()
            )
            loss = out.loss + rtd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach())
            count += 1
        losses.append(loss_sum / max(1.0, count))
    model.eval()
    save_pretrained_atomically(model, tokenizer, output_dir)
    return {
        "texts": len(items),
        "windows": len(rows),
        "epochs": epochs,
        "epoch_loss": losses,
        "optimizer_steps": total,
        "replace_rate": replace_rate,
        "hidden_size": hidden_size,
        "layers": layers,
        "seconds": round(time.perf_counter() - started, 1),
    }


def surprise_base_write(lm_dir: str | Path, output_dir: str | Path, *, seed: int = 0) -> Path:
    """Turn a causal language model saved by ``pretrain.lm_pretrain`` into a base for
    ``prm.prm_init``: the same backbone and language-model head, a fresh step head."""
    import torch
    from transformers import AutoTokenizer, BertLMHeadModel

    from selector.ml.surprise import (
        SurpriseBertConfig,
        SurpriseBertForTokenClassification,
        register,
    )

    register()
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    language_model = BertLMHeadModel.from_pretrained(lm_dir)
    settings = {
        k: v
        for k, v in language_model.config.to_dict().items()
        if k not in ("model_type", "architectures", "transformers_version", "id2label", "label2id")
    }
    settings["tie_word_embeddings"] = False  # the reference's head keeps its own copy
    config = SurpriseBertConfig(num_labels=3, step_token_id=step_token_id(tokenizer), **settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the step head's first weights: the same LM, the same base
        model = SurpriseBertForTokenClassification(config)
    # The language model twice: the backbone to fine-tune, and the frozen reference.
    state = {}
    for key, value in language_model.state_dict().items():
        if key.startswith("bert."):
            state[key] = value
            state["reference." + key.removeprefix("bert.")] = value.clone()
        elif key.startswith("cls."):
            state["reference_head." + key.removeprefix("cls.")] = value.clone()
    loaded = model.load_state_dict(state, strict=False)
    unexpected = [k for k in loaded.missing_keys if not k.startswith("classifier.")]
    if unexpected or loaded.unexpected_keys:
        raise ValueError(f"{lm_dir}: not a causal BERT language model ({loaded})")
    save_pretrained_atomically(model, tokenizer, output_dir)
    return Path(output_dir)
