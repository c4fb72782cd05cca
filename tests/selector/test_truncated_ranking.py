"""A candidate whose steps were not all scored is never ranked "convincing" on the cut."""

from labeling.models import Grade, Task
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import queue_fill
from tests.factories import ProblemFactory, SolutionFactory


def test_cut_candidates_rank_after_every_fully_scored_one_and_are_counted(db, settings):
    settings.SELECTOR_EVAL_FRACTION = 0.0  # the problem must be the selector's to fill
    version = SelectorVersion.objects.create(
        name="v", base_model="-", status=VersionStatus.READY, is_active=True
    )
    problem = ProblemFactory()
    pool = {}
    for name, score, cut in [("cut", 0.99, 3), ("a", 0.6, 0), ("b", 0.5, 0), ("c", 0.4, 0)]:
        s = SolutionFactory.create(problem=problem, grade=Grade.INCORRECT)
        SolutionScore.objects.create(
            solution=s, version=version, score=score, step_scores=[score], truncated_steps=cut
        )
        pool[name] = s
    report = queue_fill(per_problem=3, wrong_fraction=1.0)
    # The highest score belongs to the cut one, yet the three whole ones are chosen.
    assert set(Task.objects.values_list("solution_id", flat=True)) == {pool[n].pk for n in "abc"}
    assert report.truncated == 0
    # With room for everyone it is queued last: priority 0, its score kept as queued_score.
    report = queue_fill(per_problem=4, wrong_fraction=1.0, generation=report.generation)
    task = Task.objects.get(solution=pool["cut"])
    assert (task.priority, task.queued_score) == (0.0, 0.99)
    assert (report.created, report.truncated) == (1, 1)
    assert report.as_dict()["truncated"] == 1
