"""Pure logic of the five evolution agents: analyse, research, plan, refactor, evaluate.

Nothing here touches the network or the message bus; agents wrap these functions and
store their JSON-ready results through the shared context store.
"""

from .analysis import (
    COMPLEXITY_THRESHOLD,
    LONG_FUNCTION_THRESHOLD,
    AnalysisResult,
    analyze_project,
)
from .evaluation import EvaluationResult, compare_metrics, evaluate
from .executors import (
    Change,
    DocstringExecutor,
    Executor,
    ReturnNoneExecutor,
    Skip,
    default_executors,
)
from .focus import FOCUS_AREAS, normalize_focus
from .planning import PlanResult, plan_improvements
from .refactor import ImplementationResult, execute_plan
from .research import (
    CatalogueSource,
    ResearchResult,
    ResearchSource,
    load_catalogue,
    scan_project_facts,
)
from .workcopy import WorkingCopy, restore_files

__all__ = [
    "COMPLEXITY_THRESHOLD",
    "FOCUS_AREAS",
    "LONG_FUNCTION_THRESHOLD",
    "AnalysisResult",
    "CatalogueSource",
    "Change",
    "DocstringExecutor",
    "EvaluationResult",
    "Executor",
    "ImplementationResult",
    "PlanResult",
    "ResearchResult",
    "ResearchSource",
    "ReturnNoneExecutor",
    "Skip",
    "WorkingCopy",
    "analyze_project",
    "compare_metrics",
    "default_executors",
    "evaluate",
    "execute_plan",
    "load_catalogue",
    "normalize_focus",
    "plan_improvements",
    "restore_files",
    "scan_project_facts",
]
