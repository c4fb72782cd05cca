"""The selector's job parameters, one class per kind, with their bounds (``jobs.params``).

``jobs.registry`` names these classes, so ``job_create`` checks them for every front door; the
runner (``selector.services.job_runs``) reads a job's stored parameters back through them.
Evaluate, promote and score take none: their version is the job's own field.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.params import JobParams, JobParamsInvalid, bounded
from selector.services.queue_fill import FILL_RULES
from selector.services.simulation import JOB_PRESETS

MAX_EPOCHS = 1000
MAX_PER_PROBLEM = 1000  # K: candidates queued per problem in one generation
NAME_LENGTH = 100  # SelectorVersion.name's column


@dataclass(frozen=True)
class TrainParams(JobParams):
    # An untrained version from the base model instead (then only ``name`` applies).
    base: bool = False
    name: str | None = bounded(None, max_length=NAME_LENGTH)
    base_version_id: int | None = bounded(None, low=1)  # default: the active version
    epochs: int = bounded(3, low=1, high=MAX_EPOCHS)
    learning_rate: float = bounded(5e-5, low=1e-8, high=1.0)
    # Label hygiene (docs/decisions/0008-prm800k-record-shapes.md).
    exclude_unreliable: bool = True
    combine_overlaps: bool = True
    include_flagged: bool = False
    # A step the labeler wrote is a positive example unless this is set (decision 0008).
    exclude_human_completions: bool = False


@dataclass(frozen=True)
class FillParams(JobParams):
    # None: the settings' SELECTOR_PER_PROBLEM / SELECTOR_WRONG_FRACTION / SELECTOR_RULE, a
    # new generation. The job's result records the rule the fill used.
    per_problem: int | None = bounded(None, low=0, high=MAX_PER_PROBLEM)
    wrong_fraction: float | None = bounded(None, low=0.0, high=1.0)
    generation: int | None = bounded(None, low=0)
    rule: str | None = bounded(None, choices=FILL_RULES)


@dataclass(frozen=True)
class BenchmarkParams(JobParams):
    path: str = bounded()  # the uploaded file, kept where the workers read it
    name: str | None = bounded(None, max_length=200)
    threshold: float = bounded(0.5, low=0.0, high=1.0)


@dataclass(frozen=True)
class SimulateParams(JobParams):
    preset: str = bounded(JOB_PRESETS[0], choices=JOB_PRESETS)


ADAPTERS = ("qwen-prm", "math-shepherd")  # selector.ml.adapters' layouts


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be blank")


@dataclass(frozen=True)
class ImportPrmParams(JobParams):
    """An existing open PRM to register as a version (the admin form, the command's fields).
    The path is checked by the job, on the worker that will read it, never in the request."""

    model: str = bounded(max_length=500, check=_not_blank)  # a local directory or a hub id
    adapter: str = bounded(choices=ADAPTERS)
    name: str | None = bounded(None, max_length=NAME_LENGTH)
    activate: bool = False


DEFAULT_PROMPT_TEMPLATE = (
    "Solve the math problem below step by step. Write each step as its own paragraph, with a "
    'blank line between steps. After the last step, write a paragraph that is exactly "# Answer", '
    "then a paragraph that holds only the final answer.\n\nProblem: {problem}\n\nSolution:\n"
)
PROMPT_PLACEHOLDER = "{problem}"


def _has_placeholder(value: str) -> None:
    if PROMPT_PLACEHOLDER not in value:
        raise ValueError(f"must contain {PROMPT_PLACEHOLDER}")


@dataclass(frozen=True)
class GenerationParams(JobParams):
    """What a generation job samples: the fields of the command, the admin form and the API."""

    model: str = bounded(max_length=1000, check=_not_blank)  # a local directory or a hub id
    n: int = bounded(4, low=1, high=10_000)  # samples per problem
    temperature: float = bounded(1.0, low=0.0, high=10.0)
    max_new_tokens: int = bounded(1024, low=1, high=65_536)
    # Kept as typed: a trailing newline steers where the model starts writing.
    prompt_template: str = bounded(
        DEFAULT_PROMPT_TEMPLATE, max_length=20_000, check=_has_placeholder, strip=False
    )
    # A shell-style pattern on unique_id ("test/algebra/*"); "" = every problem.
    problems: str = bounded("", max_length=500)
    seed: int | None = bounded(None, low=0)

    def __post_init__(self) -> None:
        if self.temperature == 0 and self.n != 1:
            raise JobParamsInvalid({"n": "must be 1 at temperature 0 (greedy decoding gives one)"})
