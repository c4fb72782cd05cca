"""Writing a batch of PRM800K records with the ORM: any backend, a few queries per table."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce, Greatest

from labeling.models import AnnotatorProfile, Label, Problem, Solution, Task
from labeling.services.imports.pipeline import ImportReport
from labeling.services.imports.prm800k.records import Prm800kRow, record_extras

_TaskKey = tuple[int, str, int | None]


def prm800k_write_orm(rows: list[Prm800kRow], report: ImportReport) -> None:
    """Any backend (SQLite): the ORM, a few queries per table per batch."""

    # Problems, matched by the hash of their text.
    hashes = {row.problem_hash for row in rows}
    problems = _problems_by_hash(hashes)
    missing: dict[str, Prm800kRow] = {}
    for row in rows:
        if row.problem_hash not in problems:
            known = missing.get(row.problem_hash)
            # A screening record's null ground truth must not hide another record's answer.
            if known is None or known.question["ground_truth_answer"] is None:
                missing[row.problem_hash] = row
    if missing:
        Problem.objects.bulk_create(
            [
                Problem(
                    unique_id=f"prm800k/{problem_hash[:16]}",
                    problem=row.question["problem"],
                    problem_hash=problem_hash,
                    answer=row.question["ground_truth_answer"] or "",
                    solution=row.question.get("ground_truth_solution") or "",
                )
                for problem_hash, row in missing.items()
            ]
        )
        report.count(report.created, "problems", len(missing))
        problems = _problems_by_hash(hashes)

    # Solutions, deduplicated on (problem, text hash).
    def solution_key(row: Prm800kRow) -> tuple[int, str]:
        return problems[row.problem_hash]["id"], row.text_hash

    solutions = _solutions_by_key({solution_key(row) for row in rows})
    new_solutions: dict[tuple[int, str], Prm800kRow] = {}
    for row in rows:
        if solution_key(row) not in solutions:
            new_solutions.setdefault(solution_key(row), row)
    if new_solutions:
        Solution.objects.bulk_create(
            [
                Solution(
                    problem_id=problem_id,
                    steps=row.steps,
                    answer=row.answer,
                    text_hash=text_hash,
                    generator="prm800k",
                    source="prm800k",
                )
                for (problem_id, text_hash), row in new_solutions.items()
            ]
        )
        report.count(report.created, "solutions", len(new_solutions))
        report.problem_ids.update(problem_id for problem_id, _ in new_solutions)
        solutions = _solutions_by_key({solution_key(row) for row in rows})

    # Tasks, one per (solution, kind, generation); a null generation is matched in Python
    # because NULLs never conflict in a unique constraint.
    def task_key(row: Prm800kRow) -> _TaskKey:
        return solutions[solution_key(row)]["id"], row.kind, row.generation

    solution_ids = {s["id"] for s in solutions.values()}
    tasks = _tasks_by_key(solution_ids)
    new_tasks: dict[_TaskKey, Prm800kRow] = {}
    for row in rows:
        if task_key(row) not in tasks:
            new_tasks.setdefault(task_key(row), row)
    if new_tasks:
        Task.objects.bulk_create(
            [
                Task(
                    solution_id=solution_id,
                    kind=kind,
                    generation=generation,
                    queued_score=row.queued_score,
                    priority=row.queued_score or 0.0,
                    required_labels=1,
                    label_count=0,
                )
                for (solution_id, kind, generation), row in new_tasks.items()
            ]
        )
        report.count(report.created, "tasks", len(new_tasks))
        tasks = _tasks_by_key(solution_ids)

    # Labels, unique per (task, labeler): a re-imported record is skipped.
    task_ids = {tasks[task_key(row)]["id"] for row in rows}
    seen = set(Label.objects.filter(task_id__in=task_ids).values_list("task_id", "labeler"))
    annotators = dict(
        AnnotatorProfile.objects.filter(labeler__in={row.labeler for row in rows}).values_list(
            "labeler", "user_id"
        )
    )
    labels: list[Label] = []
    for row in rows:
        task = tasks[task_key(row)]
        if (task["id"], row.labeler) in seen:
            continue
        seen.add((task["id"], row.labeler))
        problem = problems[row.problem_hash]
        solution = solutions[solution_key(row)]
        labels.append(
            Label(
                task_id=task["id"],
                labeler=row.labeler,
                annotator_id=annotators.get(row.labeler),
                steps=row.label_steps,
                ratings=row.ratings,
                finish_reason=row.finish_reason,
                total_time_ms=row.total_time_ms,
                created_at=row.created_at,
                record_extras=_record_extras(row, problem, solution, task),
            )
        )
    if not labels:
        return
    Label.objects.bulk_create(labels)
    report.count(report.created, "labels", len(labels))
    # The queue's counters must agree with the labels (and the overlap check must hold).
    label_total = Coalesce(
        Subquery(
            Label.objects.filter(task_id=OuterRef("pk"))
            .order_by()
            .values("task_id")
            .annotate(n=Count("id"))
            .values("n")
        ),
        0,
    )
    Task.objects.filter(id__in={label.task_id for label in labels}).update(
        label_count=label_total, required_labels=Greatest("required_labels", label_total)
    )


def _problems_by_hash(hashes: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    # Several problems may share a text (e.g. across MATH splits): the oldest one wins.
    for problem in (
        Problem.objects.filter(problem_hash__in=hashes)
        .order_by("-id")
        .values("id", "problem_hash", "problem", "answer", "solution")
    ):
        found[problem["problem_hash"]] = dict(problem)
    return found


def _solutions_by_key(keys: set[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
    qs = Solution.objects.filter(
        problem_id__in={p for p, _ in keys}, text_hash__in={h for _, h in keys}
    ).values("id", "problem_id", "text_hash", "steps", "answer")
    return {(s["problem_id"], s["text_hash"]): dict(s) for s in qs}


def _tasks_by_key(solution_ids: set[int]) -> dict[_TaskKey, dict[str, Any]]:
    qs = Task.objects.filter(solution_id__in=solution_ids).values(
        "id", "solution_id", "kind", "generation", "queued_score"
    )
    return {(t["solution_id"], t["kind"], t["generation"]): dict(t) for t in qs}


def _record_extras(
    row: Prm800kRow, problem: dict[str, Any], solution: dict[str, Any], task: dict[str, Any]
) -> dict[str, Any]:
    stored = {
        "problem": problem["problem"],
        "ground_truth_answer": problem["answer"],
        "ground_truth_solution": problem["solution"],
        "pre_generated_steps": solution["steps"],
        "pre_generated_answer": solution["answer"],
        "pre_generated_verifier_score": task["queued_score"],
    }
    overrides = {
        key: value
        for key, value in row.question.items()
        if key not in stored or stored[key] != value
    }
    return record_extras(row, overrides=overrides)
