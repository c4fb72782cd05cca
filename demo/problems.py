"""Demo content for a fresh install: original problems, candidate solutions and demo logins.

Every problem, reference solution and candidate here was written for Stepwise (none is taken
from MATH or PRM800K). Each candidate knows whether it is right and, if not, the index of its
first wrong step, so tests can check that the grader agrees and the demo queue is realistic.

``demo_seed`` loads it all idempotently; ``manage.py seed_demo`` is its command-line face and
``make run`` prints ``DEMO_LOGINS`` in its banner.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.db import transaction

from labeling.models import (
    AnnotatorProfile,
    Grade,
    Problem,
    Solution,
    Task,
    TaskKind,
    text_sha256,
)
from labeling.services.grading import answers_grade

# (username, password, role). Fixed so the `make run` banner can print them; demo use only.
DEMO_LOGINS: list[tuple[str, str, str]] = [
    ("admin", "stepwise-admin-demo", "superuser: Django admin, dashboards, imports"),
    ("annotator", "stepwise-annotator-demo", "annotator: rates steps at /label/"),
    ("mlstaff", "stepwise-mlstaff-demo", "ML staff: selector versions and jobs"),
]
ANNOTATORS_GROUP = "annotators"
DEMO_SOURCE = "demo"
DEMO_GENERATOR = "demo-writer"
DEMO_GENERATION = 0
ANSWER_MARKER = "# Answer"


@dataclass(frozen=True)
class DemoCandidate:
    steps: tuple[str, ...]  # the last step ends with "# Answer\n\n<answer>"
    answer: str
    error_step: int | None  # index of the first wrong step; None for a correct solution

    @property
    def is_correct(self) -> bool:
        return self.error_step is None


@dataclass(frozen=True)
class DemoProblem:
    unique_id: str
    subject: str
    level: int
    problem: str
    solution: str
    answer: str
    candidates: tuple[DemoCandidate, ...]


def _cand(error_step: int | None, answer: str, *steps: str) -> DemoCandidate:
    """A candidate whose last step gets the PRM800K ``# Answer`` trailer."""
    *body, last = steps
    final = f"{last}\n\n{ANSWER_MARKER}\n\n{answer}"
    return DemoCandidate(steps=(*body, final), answer=answer, error_step=error_step)


def _problem(
    unique_id: str,
    subject: str,
    level: int,
    problem: str,
    solution: str,
    answer: str,
    *candidates: DemoCandidate,
) -> DemoProblem:
    return DemoProblem(unique_id, subject, level, problem, solution, answer, candidates)


RIGHT = None  # readability: _cand(RIGHT, ...) for a correct candidate

DEMO_PROBLEMS: tuple[DemoProblem, ...] = (
    # ---------------------------------------------------------------- Algebra
    _problem(
        "demo/algebra/1.json",
        "Algebra",
        1,
        r"Solve for $x$: $3x + 7 = 25$.",
        r"Subtracting $7$ from both sides gives $3x = 18$, so $x = \boxed{6}$.",
        "6",
        _cand(
            RIGHT,
            "6",
            r"I want to isolate $x$.",
            r"Subtracting $7$ from both sides gives $3x = 18$.",
            r"Dividing both sides by $3$ gives $x = 6$.",
            r"So the answer is $6$.",
        ),
        _cand(
            RIGHT,
            "6",
            r"I can guess and check: if $x = 6$, then $3 \cdot 6 + 7 = 18 + 7 = 25$.",
            r"That matches the right-hand side, and a linear equation like this has exactly "
            r"one solution.",
            r"So $x = 6$.",
        ),
        _cand(
            RIGHT,
            "6",
            r"$3x + 7 = 25$ means $3x = 25 - 7$.",
            r"$25 - 7 = 18$, so $3x = 18$ and $x = 18 / 3$.",
            r"$18 / 3 = 6$, so the answer is $6$.",
        ),
        _cand(
            0,
            r"\frac{32}{3}",
            r"Adding $7$ to both sides gives $3x = 32$.",
            r"Dividing both sides by $3$ gives $x = \frac{32}{3}$.",
            r"So the answer is $\frac{32}{3}$.",
        ),
        _cand(
            1,
            "5",
            r"Subtracting $7$ from both sides gives $3x = 18$.",
            r"Dividing both sides by $3$ gives $x = 5$.",
            r"So the answer is $5$.",
        ),
        _cand(
            2,
            "15",
            r"$3x + 7 = 25$ means $3x = 25 - 7$.",
            r"$25 - 7 = 18$, so $3x = 18$.",
            r"Then $x = 18 - 3 = 15$.",
            r"So the answer is $15$.",
        ),
    ),
    _problem(
        "demo/algebra/2.json",
        "Algebra",
        2,
        r"What is the slope of the line passing through the points $(2, -1)$ and $(6, 7)$?",
        r"The slope is $\frac{7 - (-1)}{6 - 2} = \frac{8}{4} = \boxed{2}$.",
        "2",
        _cand(
            RIGHT,
            "2",
            r"The slope through $(x_1, y_1)$ and $(x_2, y_2)$ is $\frac{y_2 - y_1}{x_2 - x_1}$.",
            r"Here $y_2 - y_1 = 7 - (-1) = 8$.",
            r"And $x_2 - x_1 = 6 - 2 = 4$.",
            r"So the slope is $\frac{8}{4} = 2$.",
        ),
        _cand(
            RIGHT,
            "2",
            r"Going from $(2, -1)$ to $(6, 7)$, the run is $4$ and the rise is $8$.",
            r"Slope is rise over run, which is $8 / 4 = 2$.",
        ),
        _cand(
            1,
            r"\frac{3}{2}",
            r"The slope through $(x_1, y_1)$ and $(x_2, y_2)$ is $\frac{y_2 - y_1}{x_2 - x_1}$.",
            r"Here $y_2 - y_1 = 7 - 1 = 6$.",
            r"And $x_2 - x_1 = 6 - 2 = 4$.",
            r"So the slope is $\frac{6}{4} = \frac{3}{2}$.",
        ),
        _cand(
            0,
            r"\frac{1}{2}",
            r"The slope is $\frac{x_2 - x_1}{y_2 - y_1}$.",
            r"That is $\frac{6 - 2}{7 - (-1)} = \frac{4}{8}$.",
            r"So the slope is $\frac{1}{2}$.",
        ),
    ),
    _problem(
        "demo/algebra/3.json",
        "Algebra",
        3,
        r"Let $f(x) = 2x^2 - 3x + 1$. What is $f(f(2))$?",
        r"We have $f(2) = 8 - 6 + 1 = 3$, so $f(f(2)) = f(3) = 18 - 9 + 1 = \boxed{10}$.",
        "10",
        _cand(
            RIGHT,
            "10",
            r"First I compute $f(2) = 2 \cdot 2^2 - 3 \cdot 2 + 1$.",
            r"That is $8 - 6 + 1 = 3$.",
            r"Now I need $f(3) = 2 \cdot 3^2 - 3 \cdot 3 + 1$.",
            r"That is $18 - 9 + 1 = 10$.",
            r"So $f(f(2)) = 10$.",
        ),
        _cand(
            RIGHT,
            "10",
            r"The quadratic factors: $f(x) = (2x - 1)(x - 1)$.",
            r"So $f(2) = 3 \cdot 1 = 3$.",
            r"Then $f(3) = 5 \cdot 2 = 10$.",
            r"So the answer is $10$.",
        ),
        _cand(
            1,
            "210",
            r"First I compute $f(2) = 2 \cdot 2^2 - 3 \cdot 2 + 1$.",
            r"That is $16 - 6 + 1 = 11$.",
            r"Then $f(11) = 2 \cdot 121 - 33 + 1 = 210$.",
            r"So the answer is $210$.",
        ),
        _cand(
            2,
            "8",
            r"First, $f(2) = 8 - 6 + 1 = 3$.",
            r"Now I need $f(3)$.",
            r"$f(3) = 2 \cdot 3^2 - 3 \cdot 3 + 1 = 18 - 9 - 1 = 8$.",
            r"So the answer is $8$.",
        ),
        _cand(
            0,
            "13",
            r"Composing, $f(f(x)) = 2\left(2x^2 - 3x + 1\right)^2 - 3x + 1$.",
            r"At $x = 2$ the inner quadratic is $3$, so this is $2 \cdot 3^2 - 6 + 1$.",
            r"That is $18 - 6 + 1 = 13$.",
            r"So the answer is $13$.",
        ),
    ),
    _problem(
        "demo/algebra/4.json",
        "Algebra",
        2,
        r"The sum of two numbers is $22$ and their difference is $8$. What is their product?",
        r"The numbers are $\frac{22 + 8}{2} = 15$ and $\frac{22 - 8}{2} = 7$, so their product "
        r"is $\boxed{105}$.",
        "105",
        _cand(
            RIGHT,
            "105",
            r"Let the numbers be $a$ and $b$, with $a + b = 22$ and $a - b = 8$.",
            r"Adding the equations gives $2a = 30$, so $a = 15$.",
            r"Then $b = 22 - 15 = 7$.",
            r"Their product is $15 \cdot 7 = 105$.",
        ),
        _cand(
            RIGHT,
            "105",
            r"I can use the identity $4ab = (a + b)^2 - (a - b)^2$.",
            r"That gives $4ab = 22^2 - 8^2 = 484 - 64 = 420$.",
            r"So $ab = 105$.",
        ),
        _cand(
            2,
            "120",
            r"Let the numbers be $a$ and $b$, with $a + b = 22$ and $a - b = 8$.",
            r"Adding the equations gives $2a = 30$, so $a = 15$.",
            r"Then $b = 22 - 15 = 8$.",
            r"Their product is $15 \cdot 8 = 120$.",
        ),
        _cand(
            1,
            "117",
            r"I can use the identity $4ab = (a + b)^2 - (a - b)^2$.",
            r"That gives $4ab = 22^2 - 8^2 = 484 - 16 = 468$.",
            r"So $ab = 117$.",
        ),
    ),
    _problem(
        "demo/algebra/5.json",
        "Algebra",
        5,
        r"Compute \[\frac{1}{1 \cdot 2} + \frac{1}{2 \cdot 3} + \frac{1}{3 \cdot 4} + \cdots "
        r"+ \frac{1}{9 \cdot 10}.\]",
        r"Since $\frac{1}{k(k+1)} = \frac{1}{k} - \frac{1}{k+1}$, the sum telescopes to "
        r"$1 - \frac{1}{10} = \boxed{\frac{9}{10}}$.",
        r"\frac{9}{10}",
        _cand(
            RIGHT,
            r"\frac{9}{10}",
            r"Each term splits as $\frac{1}{k(k+1)} = \frac{1}{k} - \frac{1}{k+1}$.",
            r"So the sum is \[\left(1 - \frac12\right) + \left(\frac12 - \frac13\right) + "
            r"\cdots + \left(\frac19 - \frac1{10}\right).\]",
            r"Everything cancels except the first and the last term.",
            r"That leaves $1 - \frac{1}{10} = \frac{9}{10}$.",
        ),
        _cand(
            RIGHT,
            r"\frac{9}{10}",
            r"Let $S_n$ be the sum of the first $n$ terms.",
            r"$S_1 = \frac12$, $S_2 = \frac12 + \frac16 = \frac23$ and "
            r"$S_3 = \frac23 + \frac1{12} = \frac34$.",
            r"The pattern is $S_n = \frac{n}{n+1}$, and it holds in general because "
            r"\[\frac{n}{n+1} + \frac{1}{(n+1)(n+2)} = \frac{n(n+2) + 1}{(n+1)(n+2)} "
            r"= \frac{n+1}{n+2}.\]",
            r"There are $9$ terms, so the sum is $S_9 = \frac{9}{10}$.",
        ),
        _cand(
            2,
            r"\frac{8}{9}",
            r"Each term splits as $\frac{1}{k(k+1)} = \frac{1}{k} - \frac{1}{k+1}$.",
            r"So the sum telescopes.",
            r"Everything cancels except $1$ and $-\frac{1}{9}$.",
            r"So the sum is $1 - \frac19 = \frac89$.",
        ),
        _cand(
            0,
            r"\frac{10}{11}",
            r"There are $10$ terms in this sum, one for each of $1, 2, \ldots, 10$.",
            r"The partial sums are $\frac12, \frac23, \frac34, \ldots$, so the sum of $n$ terms "
            r"is $\frac{n}{n+1}$.",
            r"With $n = 10$ the sum is $\frac{10}{11}$.",
        ),
    ),
    # ---------------------------------------------------------------- Number Theory
    _problem(
        "demo/number_theory/1.json",
        "Number Theory",
        2,
        r"What is the remainder when $7^{100}$ is divided by $5$?",
        r"Since $7^2 = 49 \equiv -1 \pmod 5$, we get $7^{100} = (7^2)^{50} \equiv (-1)^{50} "
        r"= \boxed{1} \pmod 5$.",
        "1",
        _cand(
            RIGHT,
            "1",
            r"Since $7 \equiv 2 \pmod 5$, I need $2^{100} \bmod 5$.",
            r"Powers of $2$ modulo $5$ cycle through $2, 4, 3, 1$, with period $4$.",
            r"Since $100$ is a multiple of $4$, $2^{100} \equiv 1 \pmod 5$.",
            r"So the remainder is $1$.",
        ),
        _cand(
            RIGHT,
            "1",
            r"$7^2 = 49 \equiv -1 \pmod 5$.",
            r"So $7^{100} = (7^2)^{50} \equiv (-1)^{50} = 1 \pmod 5$.",
            r"The remainder is $1$.",
        ),
        _cand(
            1,
            "2",
            r"Since $7 \equiv 2 \pmod 5$, I need $2^{100} \bmod 5$.",
            r"Powers of $2$ modulo $5$ cycle through $2, 4, 3$, with period $3$.",
            r"$100 = 3 \cdot 33 + 1$, so $2^{100} \equiv 2^1 = 2 \pmod 5$.",
            r"So the remainder is $2$.",
        ),
        _cand(
            1,
            "2",
            r"The last digits of $7^1, 7^2, 7^3, 7^4$ are $7, 9, 3, 1$, and then they repeat.",
            r"Since $100 \equiv 0 \pmod 4$, the last digit of $7^{100}$ is the first entry of "
            r"the cycle, $7$.",
            r"A number ending in $7$ leaves remainder $2$ when divided by $5$.",
            r"So the remainder is $2$.",
        ),
    ),
    _problem(
        "demo/number_theory/2.json",
        "Number Theory",
        3,
        r"How many positive divisors does $360$ have?",
        r"Since $360 = 2^3 \cdot 3^2 \cdot 5$, it has $(3+1)(2+1)(1+1) = \boxed{24}$ positive "
        r"divisors.",
        "24",
        _cand(
            RIGHT,
            "24",
            r"The prime factorization is $360 = 2^3 \cdot 3^2 \cdot 5$.",
            r"A divisor picks an exponent of $2$ from $0$ to $3$ ($4$ choices), of $3$ from $0$ "
            r"to $2$ ($3$ choices) and of $5$ from $0$ to $1$ ($2$ choices).",
            r"So there are $4 \cdot 3 \cdot 2 = 24$ divisors.",
        ),
        _cand(
            RIGHT,
            "24",
            r"I'll pair each divisor $d < \sqrt{360} \approx 18.97$ with $360 / d$.",
            r"The divisors below $19$ are $1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15, 18$.",
            r"That is $12$ divisors, and $360$ is not a perfect square, so each pairs with a "
            r"different divisor above $19$.",
            r"So there are $2 \cdot 12 = 24$ divisors.",
        ),
        _cand(
            1,
            "6",
            r"$360 = 2^3 \cdot 45 = 2^3 \cdot 3^2 \cdot 5$.",
            r"The number of divisors is the product of the exponents: $3 \cdot 2 \cdot 1 = 6$.",
            r"So $360$ has $6$ divisors.",
        ),
        _cand(
            0,
            "18",
            r"The prime factorization is $360 = 2^2 \cdot 3^2 \cdot 10$.",
            r"So the number of divisors is $(2+1)(2+1)(1+1) = 18$.",
            r"So the answer is $18$.",
        ),
    ),
    _problem(
        "demo/number_theory/3.json",
        "Number Theory",
        3,
        r"Find the greatest common divisor of $1071$ and $462$.",
        r"By the Euclidean algorithm, $1071 = 2 \cdot 462 + 147$, $462 = 3 \cdot 147 + 21$ and "
        r"$147 = 7 \cdot 21$, so the greatest common divisor is $\boxed{21}$.",
        "21",
        _cand(
            RIGHT,
            "21",
            r"Use the Euclidean algorithm: $1071 = 2 \cdot 462 + 147$.",
            r"Next, $462 = 3 \cdot 147 + 21$.",
            r"Then $147 = 7 \cdot 21 + 0$.",
            r"The last nonzero remainder is $21$, so the gcd is $21$.",
        ),
        _cand(
            RIGHT,
            "21",
            r"$462 = 2 \cdot 3 \cdot 7 \cdot 11$.",
            r"$1071 = 3^2 \cdot 7 \cdot 17$.",
            r"The common prime factors are $3$ and $7$, each to the first power, so the gcd is "
            r"$3 \cdot 7 = 21$.",
        ),
        _cand(
            RIGHT,
            "21",
            r"Both numbers are divisible by $3$: $1071 = 3 \cdot 357$ and $462 = 3 \cdot 154$.",
            r"Both $357$ and $154$ are divisible by $7$: $357 = 7 \cdot 51$ and "
            r"$154 = 7 \cdot 22$.",
            r"$51 = 3 \cdot 17$ and $22 = 2 \cdot 11$ share no prime factor.",
            r"So the gcd is $3 \cdot 7 = 21$.",
        ),
        _cand(
            1,
            "1",
            r"By the Euclidean algorithm, $1071 = 2 \cdot 462 + 147$.",
            r"Next, $462 = 3 \cdot 147 + 31$.",
            r"Continuing: $147 = 4 \cdot 31 + 23$, $31 = 1 \cdot 23 + 8$, $23 = 2 \cdot 8 + 7$ "
            r"and $8 = 1 \cdot 7 + 1$.",
            r"The last nonzero remainder is $1$, so the numbers are coprime and the gcd is $1$.",
        ),
        _cand(
            2,
            "63",
            r"$462 = 2 \cdot 3 \cdot 7 \cdot 11$.",
            r"$1071 = 3^2 \cdot 7 \cdot 17$.",
            r"The common factors are $3^2$ and $7$, so the gcd is $9 \cdot 7 = 63$.",
        ),
    ),
    _problem(
        "demo/number_theory/4.json",
        "Number Theory",
        5,
        r"What is the smallest positive integer that leaves a remainder of $2$ when divided by "
        r"$3$, a remainder of $3$ when divided by $5$, and a remainder of $2$ when divided by "
        r"$7$?",
        r"The first and last conditions say $n \equiv 2 \pmod{21}$, so $n \in \{2, 23, 44, "
        r"\ldots\}$; the first of these that is $3$ modulo $5$ is $\boxed{23}$.",
        "23",
        _cand(
            RIGHT,
            "23",
            r"The conditions $n \equiv 2 \pmod 3$ and $n \equiv 2 \pmod 7$ together mean "
            r"$n \equiv 2 \pmod{21}$.",
            r"So $n$ is one of $2, 23, 44, 65, \ldots$",
            r"Checking remainders modulo $5$: $2$ gives $2$, and $23$ gives $3$.",
            r"So the smallest such $n$ is $23$.",
        ),
        _cand(
            RIGHT,
            "23",
            r"The numbers that leave remainder $3$ when divided by $5$ are "
            r"$3, 8, 13, 18, 23, \ldots$",
            r"Modulo $3$ these are $0, 2, 1, 0, 2$, so the first two that leave remainder $2$ "
            r"are $8$ and $23$.",
            r"$8 \equiv 1 \pmod 7$, but $23 = 3 \cdot 7 + 2 \equiv 2 \pmod 7$.",
            r"So the answer is $23$.",
        ),
        _cand(
            RIGHT,
            "23",
            r"Since $n$ leaves remainder $2$ on division by both $3$ and $7$, "
            r"$n = 21k + 2$ for some integer $k \ge 0$.",
            r"I need $21k + 2 \equiv 3 \pmod 5$, that is, $21k \equiv 1 \pmod 5$.",
            r"Since $21 \equiv 1 \pmod 5$, this says $k \equiv 1 \pmod 5$.",
            r"The smallest choice is $k = 1$, giving $n = 23$.",
        ),
        _cand(
            2,
            "128",
            r"From $n \equiv 2 \pmod 3$ and $n \equiv 2 \pmod 7$, $n - 2$ is a multiple of $21$.",
            r"So $n$ is one of $2, 23, 44, 65, 86, 107, 128, \ldots$",
            r"Remainders modulo $5$: $2 \to 2$, $23 \to 2$, $44 \to 4$, $65 \to 0$, $86 \to 1$, "
            r"$107 \to 2$, $128 \to 3$.",
            r"So the smallest $n$ is $128$.",
        ),
        _cand(
            2,
            "86",
            r"Since $n$ leaves remainder $2$ on division by both $3$ and $7$, "
            r"$n = 21k + 2$ for some integer $k \ge 0$.",
            r"I need $21k + 2 \equiv 3 \pmod 5$, that is, $21k \equiv 1 \pmod 5$.",
            r"Since $21 \equiv 4 \pmod 5$, I need $4k \equiv 1 \pmod 5$, so $k \equiv 4 \pmod 5$.",
            r"The smallest choice is $k = 4$, giving $n = 86$.",
        ),
    ),
    # ---------------------------------------------------------------- Geometry
    _problem(
        "demo/geometry/1.json",
        "Geometry",
        1,
        "In right triangle $ABC$ below, $\\angle C = 90^\\circ$, $AC = 9$ and $BC = 12$. "
        "What is $AB$?\n\n"
        "[asy]\n"
        "draw((0,0)--(12,0)--(0,9)--cycle);\n"
        "draw(rightanglemark((12,0),(0,0),(0,9),20));\n"
        'label("$C$",(0,0),SW);\n'
        'label("$B$",(12,0),SE);\n'
        'label("$A$",(0,9),N);\n'
        'label("$12$",(6,0),S);\n'
        'label("$9$",(0,4.5),W);\n'
        "[/asy]",
        r"By the Pythagorean theorem, $AB = \sqrt{9^2 + 12^2} = \sqrt{225} = \boxed{15}$.",
        "15",
        _cand(
            RIGHT,
            "15",
            r"By the Pythagorean theorem, $AB^2 = AC^2 + BC^2$.",
            r"That is $AB^2 = 81 + 144 = 225$.",
            r"So $AB = \sqrt{225} = 15$.",
        ),
        _cand(
            RIGHT,
            "15",
            r"The legs $9$ and $12$ are $3$ times $3$ and $4$.",
            r"So this is a $3$-$4$-$5$ right triangle scaled by $3$, and $AB = 3 \cdot 5 = 15$.",
        ),
        _cand(
            0,
            r"3\sqrt{7}",
            r"By the Pythagorean theorem, $AB^2 = BC^2 - AC^2$.",
            r"That is $AB^2 = 144 - 81 = 63$.",
            r"So $AB = \sqrt{63} = 3\sqrt{7}$.",
        ),
        _cand(
            1,
            r"\sqrt{215}",
            r"By the Pythagorean theorem, $AB^2 = AC^2 + BC^2$.",
            r"That is $AB^2 = 81 + 144 = 215$.",
            r"So $AB = \sqrt{215}$.",
        ),
    ),
    _problem(
        "demo/geometry/2.json",
        "Geometry",
        2,
        r"A circle has circumference $10\pi$. What is its area? Express your answer in terms "
        r"of $\pi$.",
        r"From $2\pi r = 10\pi$ we get $r = 5$, so the area is $\pi r^2 = \boxed{25\pi}$.",
        r"25\pi",
        _cand(
            RIGHT,
            r"25\pi",
            r"The circumference is $2\pi r = 10\pi$, so $r = 5$.",
            r"The area is $\pi r^2 = 25\pi$.",
        ),
        _cand(
            RIGHT,
            r"25\pi",
            r"From $C = 2\pi r$ and $A = \pi r^2$ we get $A = \frac{C^2}{4\pi}$.",
            r"So $A = \frac{100\pi^2}{4\pi} = 25\pi$.",
        ),
        _cand(
            0,
            r"100\pi",
            r"The circumference is $\pi r = 10\pi$, so $r = 10$.",
            r"The area is $\pi r^2 = 100\pi$.",
        ),
        _cand(
            1,
            r"10\pi",
            r"The circumference is $2\pi r = 10\pi$, so $r = 5$.",
            r"The area is $\pi r^2 = \pi \cdot 5 \cdot 2 = 10\pi$.",
        ),
    ),
    _problem(
        "demo/geometry/3.json",
        "Geometry",
        2,
        r"What is the measure, in degrees, of each interior angle of a regular octagon?",
        r"Each exterior angle is $\frac{360^\circ}{8} = 45^\circ$, so each interior angle is "
        r"$180^\circ - 45^\circ = \boxed{135}$ degrees.",
        "135",
        _cand(
            RIGHT,
            "135",
            r"The interior angles of an $n$-gon add up to $180(n - 2)$ degrees.",
            r"For $n = 8$ that is $180 \cdot 6 = 1080$ degrees.",
            r"Each of the $8$ equal angles is $\frac{1080}{8} = 135$ degrees.",
        ),
        _cand(
            RIGHT,
            "135",
            r"Each exterior angle of a regular octagon is $\frac{360}{8} = 45$ degrees.",
            r"Each interior angle is $180 - 45 = 135$ degrees.",
        ),
        _cand(
            0,
            "157.5",
            r"The interior angles of an $n$-gon add up to $180(n - 1)$ degrees.",
            r"For $n = 8$ that is $180 \cdot 7 = 1260$ degrees.",
            r"Each of the $8$ equal angles is $\frac{1260}{8} = 157.5$ degrees.",
        ),
        _cand(
            2,
            "125",
            r"The interior angles of an $n$-gon add up to $180(n - 2)$ degrees.",
            r"For $n = 8$ that is $180 \cdot 6 = 1080$ degrees.",
            r"Each of the $8$ equal angles is $\frac{1080}{8} = 125$ degrees.",
        ),
    ),
    _problem(
        "demo/geometry/4.json",
        "Geometry",
        4,
        r"A triangle has side lengths $13$, $14$ and $15$. What is its area?",
        r"The semiperimeter is $21$, so by Heron's formula the area is "
        r"$\sqrt{21 \cdot 8 \cdot 7 \cdot 6} = \sqrt{7056} = \boxed{84}$.",
        "84",
        _cand(
            RIGHT,
            "84",
            r"The semiperimeter is $s = \frac{13 + 14 + 15}{2} = 21$.",
            r"By Heron's formula the area is \[\sqrt{s(s - 13)(s - 14)(s - 15)} = "
            r"\sqrt{21 \cdot 8 \cdot 7 \cdot 6}.\]",
            r"$21 \cdot 8 \cdot 7 \cdot 6 = 7056 = 84^2$.",
            r"So the area is $84$.",
        ),
        _cand(
            RIGHT,
            "84",
            r"Put the side of length $14$ on the $x$-axis from $(0, 0)$ to $(14, 0)$, and call "
            r"the third vertex $(x, h)$, at distance $13$ from $(0, 0)$ and $15$ from $(14, 0)$.",
            r"Then $x^2 + h^2 = 169$ and $(x - 14)^2 + h^2 = 225$.",
            r"Subtracting the first equation from the second gives $-28x + 196 = 56$, so $x = 5$.",
            r"Then $h^2 = 169 - 25 = 144$, so $h = 12$.",
            r"The area is $\frac12 \cdot 14 \cdot 12 = 84$.",
        ),
        _cand(
            2,
            "86",
            r"The semiperimeter is $s = \frac{13 + 14 + 15}{2} = 21$.",
            r"By Heron's formula the area is $\sqrt{21 \cdot 8 \cdot 7 \cdot 6}$.",
            r"$21 \cdot 8 \cdot 7 \cdot 6 = 7056$, and $\sqrt{7056} = 86$.",
            r"So the area is $86$.",
        ),
        _cand(
            0,
            "91",
            r"The area of a triangle is half the product of two of its sides, so it is "
            r"$\frac12 \cdot 13 \cdot 14$.",
            r"That is $91$.",
        ),
        _cand(
            3,
            "56",
            r"Put the side of length $14$ on the $x$-axis from $(0, 0)$ to $(14, 0)$, and call "
            r"the third vertex $(x, h)$, at distance $13$ from $(0, 0)$ and $15$ from $(14, 0)$.",
            r"Then $x^2 + h^2 = 169$ and $(x - 14)^2 + h^2 = 225$.",
            r"Subtracting the first equation from the second gives $-28x + 196 = 56$, so $x = 5$.",
            r"Then $h = 13 - 5 = 8$.",
            r"The area is $\frac12 \cdot 14 \cdot 8 = 56$.",
        ),
    ),
    _problem(
        "demo/geometry/5.json",
        "Geometry",
        3,
        "A rectangle is inscribed in a circle of radius $5$, as shown. One side of the "
        "rectangle has length $6$. What is the area of the rectangle?\n\n"
        "[asy]\n"
        "draw(circle((0,0),5));\n"
        "draw((-3,-4)--(3,-4)--(3,4)--(-3,4)--cycle);\n"
        "draw((-3,-4)--(3,4),dashed);\n"
        "dot((0,0));\n"
        'label("$6$",(0,-4),S);\n'
        "[/asy]",
        r"A diagonal of the rectangle is a diameter, of length $10$, so the other side is "
        r"$\sqrt{10^2 - 6^2} = 8$ and the area is $6 \cdot 8 = \boxed{48}$.",
        "48",
        _cand(
            RIGHT,
            "48",
            r"The diagonal of an inscribed rectangle is a diameter of the circle, so it has "
            r"length $10$.",
            r"If the other side is $b$, then $6^2 + b^2 = 10^2$, so $b^2 = 64$ and $b = 8$.",
            r"The area is $6 \cdot 8 = 48$.",
        ),
        _cand(
            RIGHT,
            "48",
            r"Put the center at the origin; the vertices are $(\pm 3, \pm y)$ with "
            r"$3^2 + y^2 = 25$.",
            r"So $y = 4$, and the other side has length $2y = 8$.",
            r"The area is $6 \cdot 8 = 48$.",
        ),
        _cand(
            0,
            "30",
            r"The other side of the rectangle is as long as the radius, $5$.",
            r"So the area is $6 \cdot 5 = 30$.",
        ),
        _cand(
            1,
            "24",
            r"The diagonal of an inscribed rectangle is a diameter of the circle, so it has "
            r"length $10$.",
            r"So the other side is $10 - 6 = 4$.",
            r"The area is $6 \cdot 4 = 24$.",
        ),
    ),
    # ---------------------------------------------------------------- Counting & Probability
    _problem(
        "demo/counting_and_probability/1.json",
        "Counting & Probability",
        2,
        r"In how many ways can a committee of $3$ people be chosen from a group of $8$ people?",
        r"The order does not matter, so there are $\binom{8}{3} = \boxed{56}$ committees.",
        "56",
        _cand(
            RIGHT,
            "56",
            r"Order does not matter, so the count is $\binom{8}{3}$.",
            r"$\binom{8}{3} = \frac{8 \cdot 7 \cdot 6}{3 \cdot 2 \cdot 1} = \frac{336}{6} = 56$.",
        ),
        _cand(
            RIGHT,
            "56",
            r"Choosing an ordered list of $3$ people gives $8 \cdot 7 \cdot 6 = 336$ ways.",
            r"Each committee is counted $3! = 6$ times, once per ordering.",
            r"So there are $336 / 6 = 56$ committees.",
        ),
        _cand(
            1,
            "336",
            r"There are $8$ choices for the first member, $7$ for the second and $6$ for the "
            r"third.",
            r"So there are $8 \cdot 7 \cdot 6 = 336$ committees.",
        ),
        _cand(
            1,
            "112",
            r"The count is $\binom{8}{3} = \frac{8!}{3!\,5!}$.",
            r"That is $\frac{8 \cdot 7 \cdot 6}{3} = \frac{336}{3} = 112$.",
        ),
    ),
    _problem(
        "demo/counting_and_probability/2.json",
        "Counting & Probability",
        3,
        r"Two fair six-sided dice are rolled. What is the probability that the sum of the "
        r"numbers shown is $8$? Express your answer as a common fraction.",
        r"Of the $36$ equally likely outcomes, $(2,6), (3,5), (4,4), (5,3), (6,2)$ sum to $8$, "
        r"so the probability is $\boxed{\frac{5}{36}}$.",
        r"\frac{5}{36}",
        _cand(
            RIGHT,
            r"\frac{5}{36}",
            r"There are $6 \cdot 6 = 36$ equally likely outcomes.",
            r"The outcomes with sum $8$ are $(2,6), (3,5), (4,4), (5,3), (6,2)$: that is $5$.",
            r"So the probability is $\frac{5}{36}$.",
        ),
        _cand(
            RIGHT,
            r"\frac{5}{36}",
            r"If the first die shows $a$, the second must show $8 - a$, which is a face of the "
            r"die exactly when $2 \le a \le 6$.",
            r"That happens for $5$ of the $6$ values of $a$, and then the second die matches "
            r"with probability $\frac16$.",
            r"So the probability is $\frac56 \cdot \frac16 = \frac{5}{36}$.",
        ),
        _cand(
            1,
            r"\frac{1}{12}",
            r"There are $6 \cdot 6 = 36$ equally likely outcomes.",
            r"The pairs with sum $8$ are $\{2, 6\}$, $\{3, 5\}$ and $\{4, 4\}$, so there are $3$ "
            r"favorable outcomes.",
            r"So the probability is $\frac{3}{36} = \frac{1}{12}$.",
        ),
        _cand(
            0,
            r"\frac{1}{11}",
            r"The possible sums are $2$ through $12$, which are $11$ equally likely values.",
            r"So the probability of a sum of $8$ is $\frac{1}{11}$.",
        ),
        _cand(
            1,
            r"\frac{1}{6}",
            r"There are $6 \cdot 6 = 36$ equally likely outcomes.",
            r"The outcomes with sum $8$ are $(1,7), (2,6), (3,5), (4,4), (5,3), (6,2)$: that "
            r"is $6$.",
            r"So the probability is $\frac{6}{36} = \frac{1}{6}$.",
        ),
    ),
    _problem(
        "demo/counting_and_probability/3.json",
        "Counting & Probability",
        2,
        r"How many distinct arrangements of the letters in the word LEVEL are there?",
        r"There are $5$ letters with L and E each repeated twice, so there are "
        r"$\frac{5!}{2!\,2!} = \boxed{30}$ arrangements.",
        "30",
        _cand(
            RIGHT,
            "30",
            r"LEVEL has $5$ letters: L twice, E twice and V once.",
            r"The number of arrangements is $\frac{5!}{2!\,2!} = \frac{120}{4} = 30$.",
        ),
        _cand(
            RIGHT,
            "30",
            r"Choose the $2$ positions for the L's: $\binom{5}{2} = 10$ ways.",
            r"Choose $2$ of the remaining $3$ positions for the E's: $\binom{3}{2} = 3$ ways.",
            r"The V goes in the last free position.",
            r"So there are $10 \cdot 3 = 30$ arrangements.",
        ),
        _cand(
            1,
            "60",
            r"LEVEL has $5$ letters: L twice, E twice and V once.",
            r"The number of arrangements is $\frac{5!}{2!} = 60$.",
        ),
        _cand(
            0,
            "120",
            r"There are $5$ letters, so there are $5! = 120$ arrangements.",
        ),
    ),
    _problem(
        "demo/counting_and_probability/4.json",
        "Counting & Probability",
        4,
        r"A fair coin is flipped $6$ times. What is the probability of getting at least $2$ "
        r"heads? Express your answer as a common fraction.",
        r"Of the $2^6 = 64$ sequences, $1 + 6 = 7$ have fewer than $2$ heads, so the "
        r"probability is $1 - \frac{7}{64} = \boxed{\frac{57}{64}}$.",
        r"\frac{57}{64}",
        _cand(
            RIGHT,
            r"\frac{57}{64}",
            r"There are $2^6 = 64$ equally likely sequences.",
            r"The complement is $0$ or $1$ heads: $\binom60 + \binom61 = 1 + 6 = 7$ sequences.",
            r"So the probability is $1 - \frac{7}{64} = \frac{57}{64}$.",
        ),
        _cand(
            RIGHT,
            r"\frac{57}{64}",
            r"Counting directly, \[\binom62 + \binom63 + \binom64 + \binom65 + \binom66 = "
            r"15 + 20 + 15 + 6 + 1 = 57.\]",
            r"There are $2^6 = 64$ sequences in all, so the probability is $\frac{57}{64}$.",
        ),
        _cand(
            1,
            r"\frac{31}{32}",
            r"There are $2^6 = 64$ equally likely sequences.",
            r"The complement is $0$ or $1$ heads, which is $1 + 1 = 2$ sequences.",
            r"So the probability is $1 - \frac{2}{64} = \frac{31}{32}$.",
        ),
        _cand(
            0,
            r"\frac{21}{32}",
            r"The complement of getting at least $2$ heads is getting at most $2$ heads.",
            r"That is $\binom60 + \binom61 + \binom62 = 1 + 6 + 15 = 22$ sequences out of $64$.",
            r"So the probability is $1 - \frac{22}{64} = \frac{42}{64} = \frac{21}{32}$.",
        ),
        _cand(
            2,
            r"\frac{47}{64}",
            r"I'll count sequences with $2$, $3$, $4$, $5$ or $6$ heads.",
            r"$\binom62 = 15$, $\binom63 = 20$, $\binom64 = 15$, $\binom65 = 6$ and "
            r"$\binom66 = 1$.",
            r"Their sum is $15 + 20 + 15 + 6 + 1 = 47$.",
            r"So the probability is $\frac{47}{64}$.",
        ),
    ),
    # ---------------------------------------------------------------- Precalculus
    _problem(
        "demo/precalculus/1.json",
        "Precalculus",
        1,
        r"Convert $150^\circ$ to radians.",
        r"We have $150^\circ \cdot \frac{\pi}{180^\circ} = \boxed{\frac{5\pi}{6}}$.",
        r"\frac{5\pi}{6}",
        _cand(
            RIGHT,
            r"\frac{5\pi}{6}",
            r"Multiply by $\frac{\pi}{180^\circ}$: $150 \cdot \frac{\pi}{180} = "
            r"\frac{150\pi}{180}$.",
            r"Since $\frac{150}{180} = \frac56$, this is $\frac{5\pi}{6}$.",
        ),
        _cand(
            RIGHT,
            r"\frac{5\pi}{6}",
            r"$150^\circ = 5 \cdot 30^\circ$, and $30^\circ = \frac{\pi}{6}$.",
            r"So $150^\circ = \frac{5\pi}{6}$.",
        ),
        _cand(
            0,
            r"\frac{27000}{\pi}",
            r"To convert, multiply by $\frac{180}{\pi}$.",
            r"That gives $\frac{150 \cdot 180}{\pi} = \frac{27000}{\pi}$.",
        ),
        _cand(
            1,
            r"\frac{3\pi}{4}",
            r"Multiply by $\frac{\pi}{180^\circ}$: $150 \cdot \frac{\pi}{180} = "
            r"\frac{150\pi}{180}$.",
            r"Since $\frac{150}{180} = \frac34$, this is $\frac{3\pi}{4}$.",
        ),
    ),
    _problem(
        "demo/precalculus/2.json",
        "Precalculus",
        1,
        r"Compute $\begin{vmatrix} 3 & -2 \\ 5 & 4 \end{vmatrix}$.",
        r"The determinant is $3 \cdot 4 - (-2) \cdot 5 = 12 + 10 = \boxed{22}$.",
        "22",
        _cand(
            RIGHT,
            "22",
            r"For a $2 \times 2$ matrix, $\begin{vmatrix} a & b \\ c & d \end{vmatrix} = ad - bc$.",
            r"Here that is $3 \cdot 4 - (-2) \cdot 5 = 12 + 10 = 22$.",
        ),
        _cand(
            RIGHT,
            "22",
            r"Expanding along the first column gives $3 \cdot 4 - 5 \cdot (-2)$.",
            r"That is $12 - (-10) = 22$.",
        ),
        _cand(
            1,
            "2",
            r"For a $2 \times 2$ matrix, $\begin{vmatrix} a & b \\ c & d \end{vmatrix} = ad - bc$.",
            r"Here that is $3 \cdot 4 - (-2) \cdot 5 = 12 - 10 = 2$.",
        ),
        _cand(
            0,
            "23",
            r"The determinant of $\begin{pmatrix} a & b \\ c & d \end{pmatrix}$ is $ac - bd$.",
            r"Here that is $3 \cdot 5 - (-2) \cdot 4 = 15 + 8 = 23$.",
        ),
    ),
    _problem(
        "demo/precalculus/3.json",
        "Precalculus",
        2,
        r"Compute $\cos 75^\circ \cos 15^\circ - \sin 75^\circ \sin 15^\circ$.",
        r"By the angle addition formula this is $\cos(75^\circ + 15^\circ) = \cos 90^\circ = "
        r"\boxed{0}$.",
        "0",
        _cand(
            RIGHT,
            "0",
            r"This is the cosine addition formula: $\cos A \cos B - \sin A \sin B = "
            r"\cos(A + B)$.",
            r"So the expression is $\cos 90^\circ = 0$.",
        ),
        _cand(
            RIGHT,
            "0",
            r"Since $75^\circ = 90^\circ - 15^\circ$, we have $\cos 75^\circ = \sin 15^\circ$ "
            r"and $\sin 75^\circ = \cos 15^\circ$.",
            r"So the expression is $\sin 15^\circ \cos 15^\circ - \cos 15^\circ \sin 15^\circ "
            r"= 0$.",
        ),
        _cand(
            0,
            r"\frac{1}{2}",
            r"This is $\cos(A - B)$ with $A = 75^\circ$ and $B = 15^\circ$.",
            r"So the expression is $\cos 60^\circ = \frac12$.",
        ),
        _cand(
            1,
            "1",
            r"This is the cosine addition formula: $\cos A \cos B - \sin A \sin B = "
            r"\cos(A + B)$.",
            r"So the expression is $\cos 90^\circ = 1$.",
        ),
    ),
    _problem(
        "demo/precalculus/4.json",
        "Precalculus",
        2,
        r"Convert the point $(-2, 2\sqrt{3})$ in rectangular coordinates to polar coordinates. "
        r"Enter your answer in the form $(r, \theta),$ where $r > 0$ and $0 \le \theta < 2\pi.$",
        r"We have $r = \sqrt{4 + 12} = 4$, and the point lies in the second quadrant with "
        r"reference angle $\frac{\pi}{3}$, so it is "
        r"$\boxed{\left( 4, \frac{2\pi}{3} \right)}$.",
        r"\left( 4, \frac{2\pi}{3} \right)",
        _cand(
            RIGHT,
            r"\left( 4, \frac{2\pi}{3} \right)",
            r"$r = \sqrt{(-2)^2 + (2\sqrt3)^2} = \sqrt{4 + 12} = 4$.",
            r"Then $\cos\theta = -\frac{2}{4} = -\frac12$ and "
            r"$\sin\theta = \frac{2\sqrt3}{4} = \frac{\sqrt3}{2}$.",
            r"So $\theta = \frac{2\pi}{3}$.",
            r"The polar coordinates are $\left( 4, \frac{2\pi}{3} \right)$.",
        ),
        _cand(
            RIGHT,
            r"\left( 4, \frac{2\pi}{3} \right)",
            r"$r^2 = 4 + 12 = 16$, so $r = 4$.",
            r"The reference angle $\alpha$ satisfies $\tan\alpha = \frac{2\sqrt3}{2} = \sqrt3$, "
            r"so $\alpha = \frac{\pi}{3}$.",
            r"The point is in the second quadrant, so $\theta = \pi - \frac{\pi}{3} = "
            r"\frac{2\pi}{3}$.",
            r"So the answer is $\left( 4, \frac{2\pi}{3} \right)$.",
        ),
        _cand(
            2,
            r"\left( 4, \frac{5\pi}{3} \right)",
            r"$r = \sqrt{(-2)^2 + (2\sqrt3)^2} = 4$.",
            r"$\tan\theta = \frac{y}{x} = \frac{2\sqrt3}{-2} = -\sqrt3$.",
            r"So $\theta = -\frac{\pi}{3}$, which is $\frac{5\pi}{3}$ in $[0, 2\pi)$.",
            r"The polar coordinates are $\left( 4, \frac{5\pi}{3} \right)$.",
        ),
        _cand(
            0,
            r"\left( \sqrt{10}, \frac{2\pi}{3} \right)",
            r"$r = \sqrt{(-2)^2 + (2\sqrt3)^2} = \sqrt{4 + 6} = \sqrt{10}$.",
            r"The point is in the second quadrant, and its reference angle is $\frac{\pi}{3}$ "
            r"since $\tan\alpha = \sqrt3$.",
            r"So $\theta = \frac{2\pi}{3}$.",
            r"The polar coordinates are $\left( \sqrt{10}, \frac{2\pi}{3} \right)$.",
        ),
    ),
    # ---------------------------------------------------------------- Prealgebra
    _problem(
        "demo/prealgebra/1.json",
        "Prealgebra",
        1,
        r"What is $15\%$ of $80$?",
        r"$15\%$ of $80$ is $0.15 \cdot 80 = \boxed{12}$.",
        "12",
        _cand(
            RIGHT,
            "12",
            r"$15\%$ is $\frac{15}{100} = 0.15$.",
            r"$0.15 \cdot 80 = 12$, so the answer is $12$.",
        ),
        _cand(
            RIGHT,
            "12",
            r"$10\%$ of $80$ is $8$, and $5\%$ is half of that, $4$.",
            r"So $15\%$ of $80$ is $8 + 4 = 12$.",
        ),
        _cand(
            1,
            "13",
            r"$10\%$ of $80$ is $8$.",
            r"$5\%$ of $80$ is $5$.",
            r"So $15\%$ of $80$ is $8 + 5 = 13$.",
        ),
        _cand(
            0,
            r"\frac{16}{3}",
            r"$15\%$ of $80$ means $\frac{80}{15}$.",
            r"$\frac{80}{15} = \frac{16}{3}$.",
        ),
    ),
    _problem(
        "demo/prealgebra/2.json",
        "Prealgebra",
        2,
        r"The mean of four numbers is $15$. Three of the numbers are $10$, $12$ and $20$. What "
        r"is the fourth number?",
        r"The four numbers add up to $4 \cdot 15 = 60$, so the fourth is "
        r"$60 - 10 - 12 - 20 = \boxed{18}$.",
        "18",
        _cand(
            RIGHT,
            "18",
            r"The four numbers add up to $4 \cdot 15 = 60$.",
            r"The three known numbers add up to $10 + 12 + 20 = 42$.",
            r"So the fourth number is $60 - 42 = 18$.",
        ),
        _cand(
            RIGHT,
            "18",
            r"Measured from the mean, $10$ is $-5$, $12$ is $-3$ and $20$ is $+5$, a total of "
            r"$-3$.",
            r"Deviations from the mean add up to $0$, so the fourth number is $3$ above the "
            r"mean: $18$.",
        ),
        _cand(
            0,
            "3",
            r"The four numbers add up to $3 \cdot 15 = 45$.",
            r"The three known numbers add up to $10 + 12 + 20 = 42$.",
            r"So the fourth number is $45 - 42 = 3$.",
        ),
        _cand(
            1,
            "28",
            r"The four numbers add up to $4 \cdot 15 = 60$.",
            r"The three known numbers add up to $10 + 12 + 20 = 32$.",
            r"So the fourth number is $60 - 32 = 28$.",
        ),
    ),
    _problem(
        "demo/prealgebra/3.json",
        "Prealgebra",
        2,
        r"Compute $\frac{3}{4} + \frac{5}{6}$. Express your answer as a common fraction in "
        r"lowest terms.",
        r"With denominator $12$: $\frac{9}{12} + \frac{10}{12} = \boxed{\frac{19}{12}}$.",
        r"\frac{19}{12}",
        _cand(
            RIGHT,
            r"\frac{19}{12}",
            r"The least common denominator is $12$.",
            r"$\frac34 = \frac{9}{12}$ and $\frac56 = \frac{10}{12}$.",
            r"So the sum is $\frac{19}{12}$.",
        ),
        _cand(
            RIGHT,
            r"\frac{19}{12}",
            r"$\frac34 + \frac56 = \frac{3 \cdot 6 + 5 \cdot 4}{4 \cdot 6} = \frac{38}{24}$.",
            r"Dividing top and bottom by $2$ gives $\frac{19}{12}$.",
        ),
        _cand(
            0,
            r"\frac{4}{5}",
            r"To add fractions, add the numerators and the denominators: "
            r"$\frac{3 + 5}{4 + 6} = \frac{8}{10}$.",
            r"In lowest terms that is $\frac45$.",
        ),
        _cand(
            1,
            r"\frac{17}{12}",
            r"The least common denominator is $12$.",
            r"$\frac34 = \frac{9}{12}$ and $\frac56 = \frac{8}{12}$.",
            r"So the sum is $\frac{17}{12}$.",
        ),
    ),
    _problem(
        "demo/prealgebra/4.json",
        "Prealgebra",
        3,
        r"A jacket costs $\$40$. It is on sale for $25\%$ off, and then a $10\%$ sales tax is "
        r"added to the sale price. What is the final cost, in dollars?",
        r"The sale price is $40 \cdot 0.75 = 30$ dollars, and with tax it is "
        r"$30 \cdot 1.1 = \boxed{33}$ dollars.",
        "33",
        _cand(
            RIGHT,
            "33",
            r"$25\%$ of $\$40$ is $\$10$, so the sale price is $\$30$.",
            r"The tax is $10\%$ of $\$30$, which is $\$3$.",
            r"So the final cost is $30 + 3 = 33$ dollars.",
        ),
        _cand(
            RIGHT,
            "33",
            r"The final cost is $40 \cdot 0.75 \cdot 1.1$ dollars.",
            r"$40 \cdot 0.75 = 30$ and $30 \cdot 1.1 = 33$, so it is $33$ dollars.",
        ),
        _cand(
            0,
            "34",
            r"The net change in price is $-25\% + 10\% = -15\%$.",
            r"So the final cost is $40 \cdot 0.85 = 34$ dollars.",
        ),
        _cand(
            1,
            "34",
            r"$25\%$ of $\$40$ is $\$10$, so the sale price is $\$30$.",
            r"The tax is $10\%$ of the original $\$40$, which is $\$4$.",
            r"So the final cost is $30 + 4 = 34$ dollars.",
        ),
    ),
    # ---------------------------------------------------------------- Intermediate Algebra
    _problem(
        "demo/intermediate_algebra/1.json",
        "Intermediate Algebra",
        3,
        r"If $x + \frac{1}{x} = 5$, what is the value of $x^2 + \frac{1}{x^2}$?",
        r"Squaring gives $x^2 + 2 + \frac{1}{x^2} = 25$, so "
        r"$x^2 + \frac{1}{x^2} = \boxed{23}$.",
        "23",
        _cand(
            RIGHT,
            "23",
            r"Square both sides: \[\left(x + \frac1x\right)^2 = x^2 + 2 + \frac{1}{x^2} = 25.\]",
            r"So $x^2 + \frac{1}{x^2} = 25 - 2 = 23$.",
        ),
        _cand(
            RIGHT,
            "23",
            r"Multiplying by $x$ gives $x^2 - 5x + 1 = 0$, so $x^2 = 5x - 1$.",
            r"The equation is symmetric in $x$ and $\frac1x$, so also "
            r"$\frac{1}{x^2} = \frac5x - 1$.",
            r"Adding, $x^2 + \frac{1}{x^2} = 5\left(x + \frac1x\right) - 2 = 25 - 2 = 23$.",
        ),
        _cand(
            0,
            "25",
            r"Squaring both sides gives $x^2 + \frac{1}{x^2} = 25$.",
            r"So the answer is $25$.",
        ),
        _cand(
            1,
            "27",
            r"Square both sides: $x^2 + 2 + \frac{1}{x^2} = 25$.",
            r"So $x^2 + \frac{1}{x^2} = 25 + 2 = 27$.",
        ),
    ),
    _problem(
        "demo/intermediate_algebra/2.json",
        "Intermediate Algebra",
        3,
        r"What is the remainder when $x^4 - 3x^2 + 2x - 5$ is divided by $x - 2$?",
        r"By the remainder theorem the remainder is $2^4 - 3 \cdot 2^2 + 2 \cdot 2 - 5 = "
        r"\boxed{3}$.",
        "3",
        _cand(
            RIGHT,
            "3",
            r"By the remainder theorem, the remainder is $p(2)$ where "
            r"$p(x) = x^4 - 3x^2 + 2x - 5$.",
            r"$p(2) = 16 - 12 + 4 - 5 = 3$.",
        ),
        _cand(
            RIGHT,
            "3",
            r"Synthetic division by $x - 2$ on the coefficients $1, 0, -3, 2, -5$.",
            r"Bring down $1$; then $1 \cdot 2 + 0 = 2$, $2 \cdot 2 - 3 = 1$, $1 \cdot 2 + 2 = 4$ "
            r"and $4 \cdot 2 - 5 = 3$.",
            r"The remainder is $3$.",
        ),
        _cand(
            0,
            "-5",
            r"By the remainder theorem, the remainder is $p(-2)$.",
            r"$p(-2) = 16 - 12 - 4 - 5 = -5$.",
        ),
        _cand(
            1,
            "9",
            r"By the remainder theorem, the remainder is $p(2)$.",
            r"$p(2) = 2^4 - 3 \cdot 2^2 + 2 \cdot 2 - 5 = 16 - 6 + 4 - 5 = 9$.",
        ),
        _cand(
            0,
            "-5",
            r"Synthetic division by $x - 2$ on the coefficients $1, -3, 2, -5$.",
            r"Bring down $1$; then $1 \cdot 2 - 3 = -1$, $-1 \cdot 2 + 2 = 0$ and "
            r"$0 \cdot 2 - 5 = -5$.",
            r"The remainder is $-5$.",
        ),
    ),
    _problem(
        "demo/intermediate_algebra/3.json",
        "Intermediate Algebra",
        5,
        r"Let $r$, $s$ and $t$ be the roots of $x^3 - 6x^2 + 11x - 6 = 0$. Find "
        r"$r^2 + s^2 + t^2$.",
        r"By Vieta's formulas, $r^2 + s^2 + t^2 = (r + s + t)^2 - 2(rs + st + tr) = 36 - 22 = "
        r"\boxed{14}$.",
        "14",
        _cand(
            RIGHT,
            "14",
            r"By Vieta's formulas, $r + s + t = 6$ and $rs + st + tr = 11$.",
            r"So $r^2 + s^2 + t^2 = (r + s + t)^2 - 2(rs + st + tr) = 36 - 22 = 14$.",
        ),
        _cand(
            RIGHT,
            "14",
            r"Trying $x = 1$: $1 - 6 + 11 - 6 = 0$, so $1$ is a root.",
            r"Dividing, $x^3 - 6x^2 + 11x - 6 = (x - 1)(x^2 - 5x + 6) = (x - 1)(x - 2)(x - 3)$.",
            r"The roots are $1, 2, 3$, and $1 + 4 + 9 = 14$.",
        ),
        _cand(
            1,
            "25",
            r"By Vieta's formulas, $r + s + t = 6$ and $rs + st + tr = 11$.",
            r"So $r^2 + s^2 + t^2 = (r + s + t)^2 - (rs + st + tr) = 36 - 11 = 25$.",
        ),
        _cand(
            0,
            "58",
            r"By Vieta's formulas, $r + s + t = 6$ and $rs + st + tr = -11$.",
            r"So $r^2 + s^2 + t^2 = (r + s + t)^2 - 2(rs + st + tr) = 36 + 22 = 58$.",
        ),
    ),
    _problem(
        "demo/intermediate_algebra/4.json",
        "Intermediate Algebra",
        2,
        r"Solve the inequality $|2x - 3| < 5$. Express your answer in interval notation.",
        r"The inequality means $-5 < 2x - 3 < 5$, so $-2 < 2x < 8$ and $-1 < x < 4$: the "
        r"answer is $\boxed{(-1, 4)}$.",
        "(-1, 4)",
        _cand(
            RIGHT,
            "(-1, 4)",
            r"$|2x - 3| < 5$ means $-5 < 2x - 3 < 5$.",
            r"Adding $3$: $-2 < 2x < 8$.",
            r"Dividing by $2$: $-1 < x < 4$.",
            r"In interval notation that is $(-1, 4)$.",
        ),
        _cand(
            RIGHT,
            "(-1, 4)",
            r"$|2x - 3| < 5$ is the same as $\left|x - \frac32\right| < \frac52$.",
            r"So $x$ is within $\frac52$ of $\frac32$: strictly between $\frac32 - \frac52 = -1$ "
            r"and $\frac32 + \frac52 = 4$.",
            r"The answer is $(-1, 4)$.",
        ),
        _cand(
            3,
            "[-1, 4]",
            r"$|2x - 3| < 5$ means $-5 < 2x - 3 < 5$.",
            r"Adding $3$: $-2 < 2x < 8$.",
            r"Dividing by $2$: $-1 < x < 4$.",
            r"In interval notation that is $[-1, 4]$.",
        ),
        _cand(
            1,
            "(-4, 4)",
            r"$|2x - 3| < 5$ means $-5 < 2x - 3 < 5$.",
            r"Adding $3$: $-8 < 2x < 8$.",
            r"Dividing by $2$: $-4 < x < 4$.",
            r"In interval notation that is $(-4, 4)$.",
        ),
        _cand(
            0,
            r"(-\infty, 4)",
            r"$|2x - 3| < 5$ means $2x - 3 < 5$.",
            r"So $2x < 8$ and $x < 4$.",
            r"In interval notation that is $(-\infty, 4)$.",
        ),
    ),
)


@dataclass(frozen=True)
class DemoSeedResult:
    problems_created: int = 0
    solutions_created: int = 0
    tasks_created: int = 0
    users_created: int = 0
    solutions_graded: int = 0
    # Candidates whose checker grade differs from what the demo data intends (should be none).
    grade_mismatches: tuple[str, ...] = ()
    skipped: bool = False  # --if-empty found existing problems


def demo_candidate_count() -> int:
    return sum(len(p.candidates) for p in DEMO_PROBLEMS)


def demo_seed(*, if_empty: bool = False, grade: bool = True) -> DemoSeedResult:
    """Load the demo problems, candidates, queue and logins; safe to run any number of times.

    Rows are matched by their natural keys (problem unique_id, solution text hash, task
    round, username), so a second run creates nothing and never touches labels or passwords
    someone has changed since. Candidates are graded by the real answer checker (after the
    rows are committed: math-verify must not run inside a write transaction), and its verdicts
    are compared with the right/wrong the demo data intends.
    """
    if if_empty and Problem.objects.exists():
        return DemoSeedResult(skipped=True)
    counts = _demo_rows_ensure()
    graded, mismatches = _demo_grade() if grade else (0, ())
    return DemoSeedResult(
        problems_created=counts["problems_created"],
        solutions_created=counts["solutions_created"],
        tasks_created=counts["tasks_created"],
        users_created=counts["users_created"],
        solutions_graded=graded,
        grade_mismatches=mismatches,
    )


@transaction.atomic
def _demo_rows_ensure() -> dict[str, int]:
    counts = {
        "problems_created": 0,
        "solutions_created": 0,
        "tasks_created": 0,
        "users_created": _demo_users_ensure(),
    }
    n_problems = len(DEMO_PROBLEMS)
    total = demo_candidate_count()
    for p_index, demo in enumerate(DEMO_PROBLEMS):
        problem, created = Problem.objects.get_or_create(
            unique_id=demo.unique_id,
            defaults={
                "problem": demo.problem,
                "problem_hash": text_sha256(demo.problem),
                "solution": demo.solution,
                "answer": demo.answer,
                "subject": demo.subject,
                "level": demo.level,
            },
        )
        counts["problems_created"] += created
        for c_index, cand in enumerate(demo.candidates):
            solution, created = Solution.objects.get_or_create(
                problem=problem,
                text_hash=text_sha256("\n".join(cand.steps)),
                defaults={
                    "steps": list(cand.steps),
                    "answer": cand.answer,
                    "generator": DEMO_GENERATOR,
                    "source": DEMO_SOURCE,
                },
            )
            counts["solutions_created"] += created
            # Round-robin over problems (every problem's first candidate, then every second
            # one...) so the first tasks an annotator sees cover all subjects.
            rank = c_index * n_problems + p_index
            _, created = Task.objects.get_or_create(
                solution=solution,
                kind=TaskKind.NORMAL,
                generation=DEMO_GENERATION,
                defaults={"priority": float(total - rank), "required_labels": 1},
            )
            counts["tasks_created"] += created
    return counts


def _demo_grade() -> tuple[int, tuple[str, ...]]:
    intended = {
        (demo.unique_id, text_sha256("\n".join(cand.steps))): cand.is_correct
        for demo in DEMO_PROBLEMS
        for cand in demo.candidates
    }
    problem_ids = list(
        Problem.objects.filter(unique_id__in=[d.unique_id for d in DEMO_PROBLEMS]).values_list(
            "id", flat=True
        )
    )
    graded = 0
    # Starting the checker processes costs seconds: only when something is left to grade.
    if Solution.objects.filter(problem_id__in=problem_ids, grade=Grade.UNGRADED).exists():
        graded = answers_grade(problem_ids=problem_ids).solutions_graded
    mismatches = []
    rows = Solution.objects.filter(problem_id__in=problem_ids).values_list(
        "problem__unique_id", "text_hash", "answer", "grade"
    )
    for unique_id, text_hash, answer, actual in rows:
        correct = intended.get((unique_id, text_hash))
        if correct is None or actual == Grade.UNGRADED:
            continue  # not demo text (edited or added since), or left for the grading task
        expected = Grade.CORRECT if correct else Grade.INCORRECT
        if actual != expected:
            mismatches.append(f"{unique_id}: answer {answer!r} graded {actual}, meant {expected}")
    return graded, tuple(mismatches)


def _demo_users_ensure() -> int:
    annotators, _ = Group.objects.get_or_create(name=ANNOTATORS_GROUP)
    from selector.services import selector_permissions_grant

    ml_staff = selector_permissions_grant()
    passwords = {username: password for username, password, _ in DEMO_LOGINS}

    _, admin_created = _user_ensure("admin", passwords["admin"], staff=True, superuser=True)
    annotator, annotator_created = _user_ensure("annotator", passwords["annotator"])
    annotator.groups.add(annotators)
    AnnotatorProfile.objects.get_or_create(user=annotator, defaults={"screening_passed": True})
    mlstaff, mlstaff_created = _user_ensure("mlstaff", passwords["mlstaff"], staff=True)
    mlstaff.groups.add(ml_staff)
    return int(admin_created) + int(annotator_created) + int(mlstaff_created)


def _user_ensure(
    username: str, password: str, *, staff: bool = False, superuser: bool = False
) -> tuple[User, bool]:
    # The password is set only when the account is new: re-seeding never undoes a change.
    user, created = User.objects.get_or_create(
        username=username, defaults={"is_staff": staff, "is_superuser": superuser}
    )
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    return user, created
