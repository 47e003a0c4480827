"""An optional model-backed executor for what rules cannot do well: docstrings with content
and complexity refactors.

It speaks the OpenAI-compatible chat-completions API (``POST {base}/chat/completions``),
which vLLM, Ollama, llama.cpp's server, hosted APIs and Bedrock gateways all serve, and is
configured by environment (off unless ``CTXSTORE_MODEL_URL`` is set):

``CTXSTORE_MODEL_URL``     base URL, e.g. ``http://127.0.0.1:11434/v1``
``CTXSTORE_MODEL``         model name (default ``default``)
``CTXSTORE_MODEL_API_KEY`` bearer token, if the endpoint wants one
``CTXSTORE_MODEL_TIMEOUT`` seconds per request (default 60)
``CTXSTORE_MODEL_CONCURRENCY`` requests in flight at once (default 4)

Its edits go through the same checks as every other (libcst, syntax-tree comparison) and
the same verification by the project's tests, with rollback. Replies it cannot use (a
docstring that restates the name, a function with another signature, one no simpler than
before) are refused, never written.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .edit_task import DOC_NEUTRAL_DECORATORS, Edited, Skip, parse, task_line, task_symbol
from .edits import EditError, insert_docstring, locate, replace_function
from .measure import RuffError, ruff_check_text
from .summaries import restates_name
from .symbols import MODULE_SYMBOL, decorator_names

__all__ = ["ModelClient", "ModelError", "ModelExecutor"]

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)
_MAX_DOC_LINES = 12
_DOC_SYSTEM = (
    "You write Python docstrings. Reply with the docstring text only: no quotes, no code "
    "fence. First line: a one-line imperative summary that says what the code does and why "
    "a caller would use it, not a restatement of its name. Then, if useful, a blank line and "
    "short notes on parameters, return value and raised exceptions. No doctest examples."
)
_REFACTOR_SYSTEM = (
    "You refactor Python functions to lower their cyclomatic complexity without changing "
    "behaviour: same name, decorators, signature, return values, exceptions and side "
    "effects. Reply with the whole new function in one ```python code block; helper "
    "functions are not allowed."
)


class ModelError(RuntimeError):
    """The model endpoint failed or answered something unusable."""


@dataclass
class ModelClient:
    base_url: str
    model: str = "default"
    api_key: str | None = None
    timeout: float = 60.0

    def complete(self, system: str, user: str) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
            }
        ).encode()
        request = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"model endpoint {self.base_url}: {exc}") from exc
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelError("the model's reply has no choices[0].message.content") from exc


@dataclass
class ModelExecutor:
    """Docstrings and complexity refactors written by a model, checked before use."""

    client: ModelClient
    name: str = "model"
    # Requests in flight at once when replies are fetched ahead (``prefetch``).
    concurrency: int = 4
    # Bisection re-applies edits: the same prompt must not cost a second request.
    _replies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ModelExecutor | None:
        env = os.environ if env is None else env
        url = env.get("CTXSTORE_MODEL_URL")
        if not url:
            return None
        try:
            timeout = float(env.get("CTXSTORE_MODEL_TIMEOUT", "60"))
        except ValueError:
            timeout = 60.0
        try:
            concurrency = max(1, int(env.get("CTXSTORE_MODEL_CONCURRENCY", "4")))
        except ValueError:
            concurrency = 4
        client = ModelClient(
            url, env.get("CTXSTORE_MODEL", "default"), env.get("CTXSTORE_MODEL_API_KEY"), timeout
        )
        return cls(client, concurrency=concurrency)

    def supports(self, action: str) -> bool:
        return action in ("add_docstring", "reduce_complexity", "split_function")

    def _ask(self, system: str, user: str) -> str:
        key = hashlib.sha256(f"{system}\0{user}".encode()).hexdigest()
        if key not in self._replies:
            self._replies[key] = self.client.complete(system, user)
        return self._replies[key]

    def edit(self, task: Mapping[str, Any], text: str, relpath: str) -> Edited | Skip:
        tree = parse(text, relpath)
        if isinstance(tree, Skip):
            return tree
        try:
            if task.get("action") == "add_docstring":
                return self._docstring(task, text, tree, relpath)
            return self._refactor(task, text, tree, relpath)
        except ModelError as exc:
            return Skip(str(exc))
        except EditError as exc:
            return Skip(f"model reply refused: {exc}")

    def prefetch(self, jobs: Sequence[tuple[Mapping[str, Any], str, str]]) -> None:
        """Ask for the replies of (task, file text, path) jobs concurrently, ahead of the
        edits, which are made one after the other: a reply whose prompt still matches when
        its edit comes is used from the cache. Failures are left for the edit to report."""
        prompts: list[tuple[str, str]] = []
        for task, text, relpath in jobs:
            if not self.supports(str(task.get("action"))):
                continue
            tree = parse(text, relpath)
            if isinstance(tree, Skip):
                continue
            with contextlib.suppress(EditError, ModelError, RuffError):
                prompt = self._prompt(task, text, tree, relpath)
                if not isinstance(prompt, Skip):
                    prompts.append(prompt[:2])
        if not prompts:
            return

        def ask(prompt: tuple[str, str]) -> None:
            with contextlib.suppress(ModelError):
                self._ask(*prompt)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(ask, prompts))

    def _prompt(
        self, task: Mapping[str, Any], text: str, tree: ast.Module, relpath: str
    ) -> tuple[str, str, Any] | Skip:
        """(system, user, context) for the task: the name a docstring must not restate, or
        the complexity a refactor must lower."""
        symbol, line = task_symbol(task), task_line(task)
        if task.get("action") == "add_docstring":
            if symbol == MODULE_SYMBOL:
                source, name = text, relpath.rsplit("/", 1)[-1].removesuffix(".py")
            else:
                node = locate(tree, symbol, line).node
                if decorator_names(node) - DOC_NEUTRAL_DECORATORS:
                    return Skip(f"{symbol} is decorated; its docstring may be read at run time")
                source = ast.get_source_segment(text, node) or ""
                name = node.name
            user = f"File {relpath}. Write the docstring of `{symbol}`:\n\n{source[:12000]}"
            return _DOC_SYSTEM, user, name
        node = locate(tree, symbol, line).node
        if isinstance(node, ast.ClassDef):
            return Skip(f"{symbol} is a class")
        source = ast.get_source_segment(text, node, padded=False) or ""
        before = _complexity(text, relpath, node)
        user = (
            f"File {relpath}. Lower the cyclomatic complexity (now {before}) of this function:"
            f"\n\n{source[:20000]}"
        )
        return _REFACTOR_SYSTEM, user, before

    def _docstring(
        self, task: Mapping[str, Any], text: str, tree: ast.Module, relpath: str
    ) -> Edited | Skip:
        prompt = self._prompt(task, text, tree, relpath)
        if isinstance(prompt, Skip):
            return prompt
        system, user, name = prompt
        symbol, line = task_symbol(task), task_line(task)
        doc = _clean_docstring(self._ask(system, user))
        if not doc:
            raise EditError("empty docstring")
        if restates_name(doc.splitlines()[0], name):
            raise EditError(f"the docstring only restates the name: {doc.splitlines()[0]!r}")
        if ">>>" in doc or len(doc.splitlines()) > _MAX_DOC_LINES:
            raise EditError("the docstring holds examples or is too long")
        new_text = insert_docstring(text, tree, symbol, doc, line)
        return Edited(new_text, "docstring_added", doc.splitlines()[0], self.name)

    def _refactor(
        self, task: Mapping[str, Any], text: str, tree: ast.Module, relpath: str
    ) -> Edited | Skip:
        prompt = self._prompt(task, text, tree, relpath)
        if isinstance(prompt, Skip):
            return prompt
        system, user, before = prompt
        symbol, line = task_symbol(task), task_line(task)
        match = _FENCE.search(self._ask(system, user))
        if match is None:
            raise EditError("no python code block in the reply")
        new_text = replace_function(text, tree, symbol, _dedent(match.group(1)), line)
        new_tree = ast.parse(new_text)
        after = _complexity(new_text, relpath, locate(new_tree, symbol, line).node)
        if before is not None and (after is None or after >= before):
            raise EditError(f"the new function is no simpler (complexity {before} -> {after})")
        return Edited(
            new_text,
            "refactored",
            f"model refactor: complexity {before} -> {after}",
            self.name,
            {"complexity_before": before, "complexity_after": after},
        )


def _complexity(text: str, relpath: str, node: ast.AST) -> int | None:
    for d in ruff_check_text(text, relpath, ("C901",)):
        if d.line == getattr(node, "lineno", None) and d.name == getattr(node, "name", None):
            return d.complexity
    return None


def _clean_docstring(reply: str) -> str:
    text = reply.strip()
    match = _FENCE.search(text)
    if match:
        text = match.group(1).strip()
    for quote in ('"""', "'''"):
        if text.startswith(quote) and text.endswith(quote) and len(text) >= 6:
            text = text[3:-3].strip()
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip()


def _dedent(source: str) -> str:
    import textwrap

    return textwrap.dedent(source)
