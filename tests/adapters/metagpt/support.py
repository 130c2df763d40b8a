"""MetaGPT for these tests: a private project root, then the imports (test modules only).

Importing ``metagpt.roles`` reads the configuration and fixes MetaGPT's project root, so the root
is prepared first; Google client libraries it imports warn about Python versions (FutureWarning),
which the suite's ``filterwarnings = error`` would turn into import errors.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path

from aios.adapters.metagpt.env import prepare_metagpt_env

#: Small generations: the embedded model is slow on a loaded machine.
MAX_TOKEN = 48

_root = Path(tempfile.mkdtemp(prefix="aios-metagpt-tests-"))
atexit.register(shutil.rmtree, _root, ignore_errors=True)
ROOT = prepare_metagpt_env(_root, llm={"max_token": MAX_TOKEN})

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    import metagpt.actions.di.execute_nb_code
    import metagpt.logs
    import metagpt.roles  # noqa: F401
    from metagpt.actions import Action
    from metagpt.context import Context
    from metagpt.provider.llm_provider_registry import LLM_REGISTRY, create_llm_instance
    from metagpt.roles import Role
    from metagpt.schema import Message

__all__ = ["LLM_REGISTRY", "MAX_TOKEN", "ROOT", "Action", "Context", "Message", "Role", "create_llm_instance"]
