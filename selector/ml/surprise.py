"""A PRM that reads its own language model's surprise (no Django).

A causal model pretrained on correct solutions expects a step's numbers before it sees them; a
step whose result it did not expect is a likely error. A plain token-classification head cannot
use that: the expectation for a token is formed at the top layer of the token before it, where
no later layer compares it with the token written next. This model keeps the pretrained
language-model head beside the PRM head and hands the PRM head, at every position, how
surprising the text of the current step has been so far (``-log p`` of each token given
everything before it), as a few numbers next to the hidden state.

The features at a position depend only on tokens up to it, and a step's features only on the
tokens of that step, so the model stays causal (``prm.is_causal`` checks it, docs/decisions/0005).

It loads through ``AutoModelForTokenClassification`` once ``register()`` has run, so training,
scoring and the checkpoint format are those of every other PRM here.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

MODEL_TYPE = "stepwise-surprise-bert"
# Per position: the step's largest surprise so far, its mean so far, and this token's own.
N_FEATURES = 3
# Larger than any surprise a float32 log-softmax yields (about 104), so segments never mix.
_SEGMENT_OFFSET = 1e4


class SurpriseBertConfig(BertConfig):
    """A causal BERT with the id of the token that ends each step (``step_token_id``)."""

    model_type = MODEL_TYPE

    def __init__(self, step_token_id: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_token_id = step_token_id


def step_surprise_features(
    log_probs: torch.Tensor, input_ids: torch.Tensor, step_token_id: int
) -> torch.Tensor:
    """(batch, length, N_FEATURES) from next-token ``log_probs`` (batch, length, vocab).

    A step's segment starts after the previous step token and ends at its own step token, so
    the features read at a step token describe that step's text alone. The first token, and
    the step tokens themselves, count as no surprise (nothing predicts a [CLS]; the step token
    is always where it is).
    """
    batch, length = input_ids.shape
    surprise = torch.zeros(batch, length, dtype=log_probs.dtype, device=log_probs.device)
    if length > 1:
        taken = log_probs[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        surprise[:, 1:] = -taken
    is_step = input_ids == step_token_id
    surprise = surprise.masked_fill(is_step, 0.0)
    # Segment g holds the tokens after the g-th step token, up to and including the next one.
    segment = torch.cumsum(is_step.long(), dim=1) - is_step.long()
    # In float64: an offset of 1e4 per segment would cost float32 its third decimal.
    offset = segment.double() * _SEGMENT_OFFSET
    shifted = torch.cummax(surprise.double() + offset, dim=1).values
    running_max = (shifted - offset).to(surprise.dtype)
    running_sum = torch.cumsum(surprise, dim=1)
    position = torch.arange(length, device=input_ids.device).expand(batch, length)
    # Where the segment started: just after the last step token before each position.
    marks = torch.where(is_step, position + 1, torch.zeros_like(position))
    starts = torch.cummax(torch.cat([torch.zeros_like(marks[:, :1]), marks[:, :-1]], 1), 1).values
    before = torch.where(
        starts > 0, running_sum.gather(1, (starts - 1).clamp(min=0)), torch.zeros_like(running_sum)
    )
    count = (position - starts + 1).to(surprise.dtype)
    running_mean = (running_sum - before) / count
    return torch.stack([running_max, running_mean, surprise], dim=-1)


class SurpriseBertForTokenClassification(BertPreTrainedModel):
    """BERT backbone + its language-model head + a step head over [hidden; surprise]."""

    config_class = SurpriseBertConfig
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: SurpriseBertConfig) -> None:
        super().__init__(config)
        self.num_labels = int(config.num_labels or 3)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.classifier = torch.nn.Linear(config.hidden_size + N_FEATURES, self.num_labels)
        self.post_init()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: Any) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        log_probs = torch.log_softmax(self.cls(hidden).float(), dim=-1)
        features = step_surprise_features(log_probs, input_ids, self.config.step_token_id)
        logits = self.classifier(torch.cat([hidden, features.to(hidden.dtype)], dim=-1))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(
                logits.float().view(-1, self.num_labels), labels.view(-1), ignore_index=-100
            )
        return TokenClassifierOutput(loss=loss, logits=logits)


def register() -> None:
    """Let ``AutoConfig``/``AutoModelForTokenClassification`` load this model type."""
    try:
        AutoConfig.register(MODEL_TYPE, SurpriseBertConfig)
        AutoModelForTokenClassification.register(
            SurpriseBertConfig, SurpriseBertForTokenClassification
        )
    except ValueError:
        pass  # already registered in this process
