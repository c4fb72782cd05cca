"""Train a PRM with TRL's PRMTrainer on an ``export_stepwise`` file.

Stepwise's own training ("Train new selector") is the supported path; this is for teams that
train with TRL. PRMTrainer exists from TRL 0.13.0 through 1.13.0 (as ``trl.PRMTrainer`` up to
0.28, in ``trl.experimental.prm`` from 0.26.0, which this script uses) and is gone from 1.14.0
on; the ``dev`` extra installs 1.13. Every PRMConfig / TrainingArguments option is accepted, e.g.::

    python manage.py export_stepwise -o prm.jsonl
    python scripts/train_prm_with_trl.py --dataset prm.jsonl --model_name_or_path /models/M \\
        --output_dir var/trl-prm --step_separator "\\n" --max_length 2048
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, cast


@dataclass
class ScriptArguments:
    dataset: str = field(metadata={"help": "an export_stepwise JSONL file"})
    model_name_or_path: str = field(metadata={"help": "a local model directory or hub id"})


def _prm_classes() -> tuple[Any, Any]:
    try:
        from trl.experimental.prm import PRMConfig, PRMTrainer
    except ImportError:
        sys.exit("this TRL has no trl.experimental.prm: pip install 'trl>=0.26,<1.14'")
    return PRMConfig, PRMTrainer


def main(argv: list[str] | None = None) -> float:
    from datasets import load_dataset
    from transformers import AutoModelForTokenClassification, AutoTokenizer, HfArgumentParser

    prm_config, prm_trainer = _prm_classes()
    parser = HfArgumentParser(cast(Any, (ScriptArguments, prm_config)))
    script, config = parser.parse_args_into_dataclasses(args=argv)
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    # TRL labels the last token of each step's separator; a separator the tokenizer drops
    # (WordPiece drops "\n", TRL's default) would silently put labels on step text instead.
    if not tokenizer.encode(config.step_separator, add_special_tokens=False):
        sys.exit(
            f"--step_separator {config.step_separator!r} is no token for this tokenizer; "
            f"pick one it keeps (for a BERT-like tokenizer: {tokenizer.sep_token!r})"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForTokenClassification.from_pretrained(script.model_name_or_path, num_labels=2)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    dataset = load_dataset("json", data_files=script.dataset, split="train")
    trainer = prm_trainer(
        model=model, args=config, processing_class=tokenizer, train_dataset=dataset
    )
    loss = float(trainer.train().training_loss)
    trainer.save_model(config.output_dir)
    print(f"trained on {len(dataset)} rows; final training loss {loss:.4f}")
    return loss


if __name__ == "__main__":
    sys.exit(0 if math.isfinite(main()) else 1)
