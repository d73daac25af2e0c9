"""The distribution itself: what importing it without LangChain says, and that promptops never imports LangChain."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_without_langchain_core_says_what_to_install() -> None:
    result = run(
        """
        import sys
        sys.modules["langchain_core"] = None  # as if it were not installed
        try:
            import promptops_langchain
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without langchain-core")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "promptops_langchain needs langchain-core: pip install mlflow-promptops-langchain "
        "(or pip install 'langchain-core>=1')"
    )


def test_promptops_and_replay_do_not_import_langchain() -> None:
    result = run(
        """
        import sys
        import promptops
        from promptops import replay
        from promptops.replay import _target
        assert not [name for name in sys.modules if name.startswith("langchain")], "langchain imported"
        """
    )
    assert result.returncode == 0, result.stderr


def test_public_names() -> None:
    import promptops_langchain

    assert promptops_langchain.__all__ == ["PinnedPrompt", "PromptOpsCallbackHandler", "__version__", "pinned_prompt"]
    assert promptops_langchain.PromptOpsCallbackHandler.run_inline is True
