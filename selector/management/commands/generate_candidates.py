from typing import Any

from django.core.management.base import CommandParser

from jobs.models import JobKind
from selector.management.commands._selector_job import SelectorJobCommand
from selector.services.job_params import DEFAULT_PROMPT_TEMPLATE


class Command(SelectorJobCommand):
    help = (
        "Sample N solutions per problem from a causal LM (vLLM when installed, else "
        "transformers), one step per paragraph ending in '# Answer'; import, grade and score "
        "them like uploaded candidates. Runs on the ml worker unless --sync."
    )
    kind = JobKind.GENERATE

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument("--model", required=True, help="a local model directory or hub id")
        parser.add_argument("--n", type=int, required=True, help="solutions per problem")
        parser.add_argument("--temperature", type=float, default=1.0)
        parser.add_argument("--max-new-tokens", type=int, default=1024)
        parser.add_argument(
            "--prompt-template",
            default=DEFAULT_PROMPT_TEMPLATE,
            help="prompt text with {problem} where the problem goes (default: asks for "
            "PRM800K's layout)",
        )
        parser.add_argument(
            "--problems",
            default="",
            help="only problems whose unique_id matches this shell-style pattern, "
            "e.g. 'test/algebra/*' (default: every problem)",
        )
        parser.add_argument("--seed", type=int, help="sampling seed (default: random)")

    def handle(self, *args: Any, **options: Any) -> None:
        params = {
            key: options[key]
            for key in ("model", "n", "temperature", "max_new_tokens", "prompt_template")
        }
        params["problems"] = options["problems"]
        params["seed"] = options["seed"]
        self.run_job(options, params=params)
