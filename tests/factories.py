"""factory_boy factories shared by every test package."""

import uuid
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from labeling.models import (
    AnnotatorProfile,
    Grade,
    Label,
    Problem,
    Solution,
    Task,
    TaskKind,
    text_sha256,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True  # the groups hook saves through the m2m manager

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or ():
            self.groups.add(Group.objects.get_or_create(name=name)[0])


def staff_with(*perms: str, username: str = "", **kwargs) -> Any:
    """A staff user holding exactly ``perms`` ("app_label.codename"), granted directly."""
    user: Any = UserFactory(is_staff=True, **({"username": username} if username else {}), **kwargs)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def annotator(username: str = "", **kwargs) -> Any:
    """A user in the `annotators` group, with a profile."""
    user: Any = UserFactory(
        groups=["annotators"], **({"username": username} if username else {}), **kwargs
    )
    AnnotatorProfile.objects.get_or_create(user=user)
    return user


class ProblemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Problem

    unique_id = factory.Sequence(lambda n: f"test/algebra/{n}.json")
    problem = factory.Sequence(lambda n: f"What is ${n} + {n}$?")
    problem_hash = factory.LazyAttribute(lambda o: text_sha256(o.problem))
    solution = "Add the numbers."
    answer = factory.Sequence(lambda n: str(2 * n))
    subject = "Algebra"
    level = 1


class SolutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Solution

    problem = factory.SubFactory(ProblemFactory)
    steps = factory.Sequence(
        lambda n: [f"Step one of candidate {n}.", "Step two.", "# Answer\n\n4"]
    )
    answer = "4"
    text_hash = factory.LazyAttribute(lambda o: text_sha256("\n".join(o.steps)))
    generator = "test"
    source = "test"
    grade = Grade.UNGRADED


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    solution = factory.SubFactory(SolutionFactory)
    kind = TaskKind.NORMAL
    generation = 1
    priority = 0.5
    queued_score = 0.5
    required_labels = 1


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label

    task = factory.SubFactory(TaskFactory)
    annotator = None
    labeler = factory.LazyFunction(uuid.uuid4)
    # The stored steps carry the same ratings as ``ratings`` (readers derive them from steps).
    steps = factory.LazyAttribute(
        lambda o: [
            {
                "completions": [{"text": text, "rating": rating, "flagged": False}],
                "human_completion": None,
                "chosen_completion": 0,
            }
            for text, rating in zip(o.task.solution.steps, o.ratings, strict=False)
        ]
    )
    ratings = factory.LazyAttribute(lambda o: [1] * len(o.task.solution.steps))
    finish_reason = "solution"
    total_time_ms = 12_000
    created_at = factory.Faker("date_time_this_year", tzinfo=__import__("datetime").UTC)
