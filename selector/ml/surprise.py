"""A PRM that reads a language model's surprise (no Django).

A causal model pretrained on correct solutions expects a step's numbers before it sees them; a
step whose result it did not expect is a likely error. A plain token-classification head cannot
use that: the expectation for a token is formed at the top layer of the token before it, where
no later layer compares it with the token written next. This model keeps a frozen copy of the
pretrained language model (the *reference*) beside the fine-tuned backbone and hands the step
head, at every position, how surprising the reference found the current step so far (``-log p``
of each token given everything before it), as a few numbers next to the hidden state.

The reference is frozen because fine-tuning moves the backbone under any language-model head
that reads it: in the simulation a shared backbone's surprise fell from AUROC 0.94 to 0.63 over
one training run with every label (decision 0011). The copy costs one more forward pass.

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
# Adam moves every weight by about the learning rate per step, so the three surprise inputs
# would move a logit far less than the hidden state's many; the gain gives them comparable
# reach. Their weights start at zero, so the gain adds no prior before training.
SURPRISE_GAIN = 8.0


class SurpriseBertConfig(BertConfig):
    """A causal BERT with the id of the token that ends each step (``step_token_id``)."""

    model_type = MODEL_TYPE

    def __init__(
        self, step_token_id: int = -1, surprise_gain: float = SURPRISE_GAIN, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.step_token_id = step_token_id
        self.surprise_gain = surprise_gain


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
    """A fine-tuned BERT backbone + a step head over [hidden; surprise], the surprise read from
    a frozen reference language model (backbone and head) that training never changes."""

    config_class = SurpriseBertConfig

    def __init__(self, config: SurpriseBertConfig) -> None:
        super().__init__(config)
        self.num_labels = int(config.num_labels or 3)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.reference = BertModel(config, add_pooling_layer=False)
        self.reference_head = BertOnlyMLMHead(config)
        self.classifier = torch.nn.Linear(config.hidden_size + N_FEATURES, self.num_labels)
        self.post_init()
        with torch.no_grad():
            self.classifier.weight[:, config.hidden_size :] = 0.0
        self.keep_frozen()

    def keep_frozen(self) -> None:
        """Mark the reference as not trained. ``from_pretrained`` hands back every loaded
        weight as trainable, so ``prm.load_prm`` calls this again after loading."""
        self.reference.requires_grad_(False)
        self.reference_head.requires_grad_(False)

    def init_step_head(self, linear: torch.nn.Linear) -> None:
        """How a new step head starts (an ensemble's extra heads): the hidden state's weights
        at random, the surprise inputs' at zero, like ``classifier``."""
        with torch.no_grad():
            linear.weight.normal_(0.0, self.config.initializer_range)
            linear.weight[:, self.config.hidden_size :] = 0.0
            linear.bias.zero_()

    def train(self, mode: bool = True) -> SurpriseBertForTokenClassification:
        super().train(mode)
        self.reference.eval()  # frozen: no dropout either
        self.reference_head.eval()
        return self

    def surprise_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(batch, length, N_FEATURES) from the frozen reference language model."""
        known = self.reference.embeddings.word_embeddings.num_embeddings
        if self.bert.embeddings.word_embeddings.num_embeddings > known:
            raise ValueError(
                f"the vocabulary grew past the reference language model's {known} tokens; "
                "build the base again from a tokenizer that holds every token"
            )
        with torch.no_grad():
            hidden = self.reference(input_ids=input_ids, attention_mask=attention_mask)
            logits = self.reference_head(hidden.last_hidden_state)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            return step_surprise_features(log_probs, input_ids, self.config.step_token_id)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        features = self.surprise_features(input_ids, attention_mask) * self.config.surprise_gain
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
