"""Generating candidate solutions on the ``ml`` worker: sample N solutions per problem from a
causal LM, shape each into PRM800K's steps, and send them through the same candidate import
and grading as a JSONL upload; then the active selector scores them, so the next queue fill
can pick them."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from django.db.models import QuerySet

from jobs.models import Job
from labeling.answers import ANSWER_MARKER
from labeling.models import Problem
from labeling.services.grading import AnswerChecker, answers_grade
from labeling.services.imports import candidates_import
from selector.services.common import Progress, SelectorError, progress_for
from selector.services.job_params import PROMPT_PLACEHOLDER, GenerationParams
from selector.services.scoring import candidates_score
from selector.services.versions import selector_active

# Sampled solutions held on disk (not in memory) before each import: about this many per batch.
_SAMPLES_PER_IMPORT = 4096


def generated_steps(text: str) -> list[str] | None:
    """PRM800K's shape for a sampled text: one step per paragraph (blank lines separate them),
    the last step ``# Answer`` and the final answer. The answer is the rest of the marker's
    line, else the next non-blank line (a repeated marker is skipped); whatever follows it is
    dropped (a base model goes on to write another problem). None when the text never reaches
    a non-empty answer."""
    steps: list[str] = []
    paragraph: list[str] = []
    lines = iter(text.split("\n"))
    for line in lines:
        if _is_marker(line.strip()):
            if paragraph:
                steps.append("\n".join(paragraph).strip())
            answer = line.strip()[len(ANSWER_MARKER) :].lstrip(":").strip()
            if not answer:
                # The next non-blank line; a repeated marker line counts as the same marker.
                answer = next(
                    (r.strip() for r in lines if r.strip() and not _is_marker(r.strip())), ""
                )
            # The grader reads the answer after the last marker: one inside it would cut it.
            if not answer or ANSWER_MARKER in answer:
                return None
            return [*steps, f"{ANSWER_MARKER}\n\n{answer}"]
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            steps.append("\n".join(paragraph).strip())
            paragraph = []
    return None


def _is_marker(line: str) -> bool:
    return line.startswith(ANSWER_MARKER)


def problems_matching(pattern: str) -> QuerySet[Problem]:
    """Problems whose ``unique_id`` matches a shell-style pattern (``*``, ``?``); all for ""."""
    problems = Problem.objects.order_by("id")
    if not pattern:
        return problems
    # A regex both databases read the same way (PostgreSQL ~, Python re on SQLite).
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return problems.filter(unique_id__regex=f"^{regex}$")


def _generator_name(model: str) -> str:
    return model if len(model) <= 100 else "…" + model[-99:]


def _chunks(rows: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def candidates_generate(
    *, params: GenerationParams, job: Job | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Sample ``params.n`` solutions for every matching problem, import the finished ones as
    candidates (deduplicated, graded with math-verify), and score the pool with the active
    selector version. Progress counts samples, then solutions scored."""
    from selector.ml.devices import resolve_device
    from selector.ml.generation import Sampling, sampler_load, samples_generate
    from selector.ml.prm import resolve_model_path

    report = progress_for(job, progress)
    problems = list(problems_matching(params.problems).values_list("unique_id", "problem"))
    if not problems:
        raise SelectorError(f"problems: no problem's unique_id matches {params.problems!r}")
    try:
        path = resolve_model_path(params.model)
    except FileNotFoundError as exc:
        raise SelectorError(f"model: {exc}") from exc
    sampling = Sampling(params.n, params.temperature, params.max_new_tokens, params.seed)
    total = len(problems) * params.n
    report(0, total)
    result: dict[str, Any] = {"problems": len(problems), "samples": total, "finished": 0}
    started = time.monotonic()
    sampler = sampler_load(path, device=resolve_device(settings.SELECTOR_DEVICE))
    result["backend"] = sampler.backend
    created = graded = 0
    per_import = max(1, _SAMPLES_PER_IMPORT // params.n)
    try:
        with AnswerChecker() as checker:
            for number, chunk in enumerate(_chunks(problems, per_import)):
                offset = number * per_import * params.n

                def sampled(done: int, _of: int, offset: int = offset) -> None:
                    report(offset + done, total)

                prompts = [params.prompt_template.replace(PROMPT_PLACEHOLDER, p) for _, p in chunk]
                samples = samples_generate(sampler, prompts, sampling, progress=sampled)
                with tempfile.SpooledTemporaryFile(max_size=16 << 20) as lines:
                    result["finished"] += _write_candidates(
                        lines, samples, chunk, _generator_name(params.model)
                    )
                    lines.seek(0)
                    imported = candidates_import(stream=lines, source=f"generated by {path}")
                created += imported.created.get("solutions", 0)
                graded += answers_grade(
                    problem_ids=imported.problem_ids, checker=checker
                ).solutions_graded
    finally:
        result["generated_tokens"] = sampler.generated_tokens
        sampler.close()
    seconds = time.monotonic() - started
    result |= {
        "unfinished": total - result["finished"],
        "created": created,  # new solutions; the rest were duplicates of stored ones
        "graded": graded,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(result["generated_tokens"] / seconds, 1) if seconds else None,
    }
    version = selector_active()
    result["scored_by"] = version.name if version is not None else None
    result["scored"] = (
        candidates_score(version=version, progress=lambda done, t: report(total + done, total + t))
        if version is not None
        else 0
    )
    return result


def _write_candidates(
    out: IO[bytes],
    samples: Iterator[tuple[int, list[str]]],
    problems: list[tuple[str, str]],
    generator: str,
) -> int:
    """Candidate JSONL lines for the finished samples; returns how many were finished."""
    finished = 0
    for index, texts in samples:
        unique_id = problems[index][0]
        for text in texts:
            steps = generated_steps(text)
            if steps is None:
                continue
            finished += 1
            record = {"unique_id": unique_id, "steps": steps, "generator": generator}
            out.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    return finished
