"""The one home of final answers: the ``# Answer`` trailer and the cheap normal form."""

import pytest

from labeling.answers import ANSWER_MARKER, answer_extract, answer_normalize


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (r"$\frac{1}{2}$", r"\frac{1}{2}"),
        (r"\boxed{ 3 }", "3"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"1\,000", "1000"),
        (r"\boxed{a}+\boxed{b}", r"a}+\boxed{b"),  # one enclosing box only, as before
        (r"\boxed{3", r"\boxed{3"),  # not enclosed: left as it is
        ("", ""),
    ],
)
def test_normal_form(raw, normal):
    assert answer_normalize(raw) == normal


def test_the_trailer_is_the_one_the_demo_importers_and_grader_share():
    steps = ["Add.", f"So it is 4.\n\n{ANSWER_MARKER}\n\n 4 "]
    assert ANSWER_MARKER == "# Answer" and answer_extract(steps) == "4"
