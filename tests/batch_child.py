"""One batched ``generate`` call in its own process, for the kill-and-resume tests (which SIGKILL it
while its batch job is pending, then run it again). Prints the reply texts as a JSON list.

usage: python -m tests.batch_child SPEC BASE_URL KEY CACHE_PATH PROMPTS_JSON_FILE
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> None:
    from ffbench.backends import load_backend

    spec, url, key, cache_path, prompts_file = argv
    with open(prompts_file) as f:
        prompts = json.load(f)
    args = {"batch": True, "poll_interval": 0.05, "retry_base": 0.01}
    if spec.startswith("openai/"):
        args["api"] = "chat"
    backend = load_backend(spec, args, base_url=url, api_key=key, cache_path=cache_path)
    try:
        out = backend.generate(prompts, 16)
    finally:
        backend.close()
    print(json.dumps([g.text for g in out]))


if __name__ == "__main__":
    main(sys.argv[1:])
