"""Pure logic of the five evolution agents: analyse, research, plan, refactor, evaluate.

Nothing here touches the network or the message bus; agents wrap these functions and
store their JSON-ready results through the shared context store.
"""

from .analysis import (
    COMPLEXITY_THRESHOLD,
    LONG_FUNCTION_THRESHOLD,
    AnalysisResult,
    analyze_files,
    analyze_project,
)
from .edit_task import Edited, Executor, Skip
from .evaluation import EvaluationResult, compare_metrics, evaluate
from .executors import ReturnNoneExecutor, RuffSimplifyExecutor
from .focus import FOCUS_AREAS, normalize_focus
from .learning import Learning, task_key
from .model import ModelClient, ModelExecutor
from .payloads import analysis_payload, encoded_size
from .planning import LEARNED_FROM, PlanResult, plan_improvements
from .refactor import ImplementationResult, default_executors, execute_plan
from .research import (
    CatalogueSource,
    ResearchResult,
    ResearchSource,
    load_catalogue,
    scan_project_facts,
)
from .verify import TestRun, Verifier, default_test_command
from .workcopy import WorkingCopy, restore_files

__all__ = [
    "COMPLEXITY_THRESHOLD",
    "FOCUS_AREAS",
    "LEARNED_FROM",
    "LONG_FUNCTION_THRESHOLD",
    "AnalysisResult",
    "CatalogueSource",
    "Edited",
    "EvaluationResult",
    "Executor",
    "ImplementationResult",
    "Learning",
    "ModelClient",
    "ModelExecutor",
    "PlanResult",
    "ResearchResult",
    "ResearchSource",
    "ReturnNoneExecutor",
    "RuffSimplifyExecutor",
    "Skip",
    "TestRun",
    "Verifier",
    "WorkingCopy",
    "analysis_payload",
    "analyze_files",
    "analyze_project",
    "compare_metrics",
    "default_executors",
    "default_test_command",
    "encoded_size",
    "evaluate",
    "execute_plan",
    "load_catalogue",
    "normalize_focus",
    "plan_improvements",
    "restore_files",
    "scan_project_facts",
    "task_key",
]
