"""`promptops prompts ...` against the real sqlite MLflow registry, and the installed console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptops
from promptops.cli import app
from tests.conftest import Registry

runner = CliRunner()
PROMPTOPS = Path(sys.executable).parent / "promptops"


def run(uri: str | None, *args: str, env: dict[str, str | None] | None = None, input: str | None = None):
    """Invoke the CLI in-process, with `--tracking-uri uri` unless `uri` is None."""
    prefix = ["--tracking-uri", uri] if uri is not None else []
    return runner.invoke(app, [*prefix, *args], env=env, input=input)


def assert_usage_error(result, *fragments: str) -> str:
    """Exit code 2, nothing on stdout, exactly one `error:` line on stderr containing every fragment."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_versions(registry: Registry, prompt_name: str) -> str:
    """`prompt_name` with a text version 1 (@production) and a chat version 2 (@staging)."""
    registry.register(
        prompt_name,
        "Summarize {{text}} briefly.\nKeep names.",
        alias="production",
        commit_message="first cut",
        model_config={"model_name": "gpt-4o-mini", "temperature": 0.2},
    )
    registry.register(
        prompt_name,
        [
            {"role": "system", "content": "You summarize documents."},
            {"role": "user", "content": "Summarize {{text}} in {{words}} words."},
        ],
        alias="staging",
        model_config={"model_name": "gpt-4o", "temperature": 0.5},
    )
    return prompt_name


# ------------------------------------------------------------------------------------------------ help, imports


def test_help_lists_every_command() -> None:
    result = run(None, "prompts", "--help")
    assert result.exit_code == 0, result.output
    for command in ("list", "show", "diff", "register", "alias"):
        assert command in result.stdout
    assert "--tracking-uri" in run(None, "--help").stdout
    version = run(None, "--version")
    assert version.exit_code == 0 and version.stdout == f"promptops {promptops.__version__}\n"


def test_import_promptops_does_not_import_the_cli_and_help_does_not_import_mlflow() -> None:
    code = (
        "import sys, promptops\n"
        "assert 'promptops.cli' not in sys.modules and 'typer' not in sys.modules, 'import promptops loaded the CLI'\n"
        "from promptops.cli import main\n"
        "sys.argv = ['promptops', 'prompts', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'mlflow' not in sys.modules, 'promptops --help imported mlflow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------------ register, alias


def test_register_text_template_with_alias_message_and_inline_model_config(
    registry: Registry, prompt_name: str, tmp_path: Path
) -> None:
    (tmp_path / "summarize.txt").write_text("Summarize {{text}}.\n", encoding="utf-8")
    result = run(
        registry.uri,
        "prompts",
        "register",
        prompt_name,
        "--template-file",
        "summarize.txt",
        "--alias",
        "production",
        "-m",
        "first version",
        "--model-config",
        '{"model_name": "gpt-4o-mini", "temperature": 0.1}',
    )
    assert result.exit_code == 0, result.output
    assert f"registered {prompt_name} version 1" in result.stdout
    assert f"@production → {prompt_name}/1" in result.stdout
    stored = registry.client.get_prompt_version_by_alias(prompt_name, "production")
    assert stored.version == 1
    assert stored.template == "Summarize {{text}}."  # the editor's trailing newline is dropped
    assert stored.commit_message == "first version"
    assert stored.model_config == {"model_name": "gpt-4o-mini", "temperature": 0.1}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_register_chat_template_from_json_or_yaml_with_model_config_file(
    registry: Registry, prompt_name: str, tmp_path: Path, suffix: str
) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarize {{text}}"},
    ]
    if suffix == ".json":
        (tmp_path / "chat.json").write_text(json.dumps(messages), encoding="utf-8")
    else:
        (tmp_path / "chat.yaml").write_text(
            "- role: system\n  content: You are terse.\n- role: user\n  content: 'Summarize {{text}}'\n",
            encoding="utf-8",
        )
    (tmp_path / "model.json").write_text('{"model_name": "gpt-4o", "max_tokens": 100}', encoding="utf-8")
    result = run(
        registry.uri, "prompts", "register", prompt_name, "-f", f"chat{suffix}", "--model-config", "model.json"
    )
    assert result.exit_code == 0, result.output
    stored = registry.client.get_prompt_version(prompt_name, 1)
    assert stored.template == messages
    assert stored.model_config == {"model_name": "gpt-4o", "max_tokens": 100}


def test_register_reads_stdin(registry: Registry, prompt_name: str) -> None:
    result = run(registry.uri, "prompts", "register", prompt_name, "-f", "-", input="Hello {{name}}")
    assert result.exit_code == 0, result.output
    assert registry.client.get_prompt_version(prompt_name, 1).template == "Hello {{name}}"


def test_register_into_a_new_store_creates_it(tmp_path: Path, prompt_name: str) -> None:
    (tmp_path / "t.txt").write_text("Hi {{x}}", encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    (tmp_path / "new").mkdir()
    result = run(uri, "prompts", "register", prompt_name, "-f", "t.txt")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert (tmp_path / "new" / "mlflow.db").is_file()


def test_alias_moves_an_alias(registry: Registry, two_versions: str) -> None:
    result = run(registry.uri, "prompts", "alias", two_versions, "production", "2")
    assert result.exit_code == 0, result.output
    assert f"@production → {two_versions}/2 (was 1)" in result.stdout
    assert registry.client.get_prompt_version_by_alias(two_versions, "production").version == 2
    result = run(registry.uri, "prompts", "alias", two_versions, "@canary", "1")
    assert result.exit_code == 0, result.output
    assert registry.client.get_prompt_version_by_alias(two_versions, "canary").version == 1


def test_mlflow_environment_is_restored_after_a_command(registry: Registry, two_versions: str) -> None:
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert run(registry.uri, "prompts", "show", two_versions).exit_code == 0
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


# ------------------------------------------------------------------------------------------------ list, show


def test_list_shows_latest_version_and_aliases(registry: Registry, two_versions: str) -> None:
    result = run(registry.uri, "prompts", "list", "--filter", two_versions)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith(two_versions))
    assert row.split()[1] == "2"
    assert "production → 1" in row and "staging → 2" in row
    assert "first cut" in row  # MLflow's prompt description: the first version's commit message


def test_list_with_no_match(registry: Registry, prompt_name: str) -> None:
    registry.register(prompt_name, "x")
    result = run(registry.uri, "prompts", "list", "--filter", "no-such-prompt-anywhere")
    assert result.exit_code == 0, result.output
    assert "no prompts" in result.stdout


def test_show_defaults_to_the_default_alias(local_registry: Registry, two_versions: str) -> None:
    result = run(None, "prompts", "show", two_versions)  # tracking URI from promptops' settings
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{two_versions}  version 1  (@production)" in out
    assert "production → 1, staging → 2" in out
    assert '{"model_name": "gpt-4o-mini", "temperature": 0.2}' in out
    assert "first cut" in out
    assert "template (text):\nSummarize {{text}} briefly.\nKeep names.\n" in out


def test_show_uses_a_configured_pin(local_registry: Registry, two_versions: str) -> None:
    promptops.configure(pins={two_versions: "staging"})
    result = run(None, "prompts", "show", two_versions)
    assert result.exit_code == 0, result.output
    assert f"{two_versions}  version 2  (@staging)" in result.stdout


def test_show_falls_back_to_latest_when_the_default_alias_is_missing(registry: Registry, prompt_name: str) -> None:
    registry.register(prompt_name, "one")
    registry.register(prompt_name, "two")
    result = run(registry.uri, "prompts", "show", prompt_name)
    assert result.exit_code == 0, result.output
    assert f"{prompt_name}  version 2" in result.stdout
    assert "no alias 'production'" in result.stdout
    assert result.stdout.rstrip().endswith("two")


def test_show_chat_template_by_alias_and_version(registry: Registry, two_versions: str) -> None:
    by_alias = run(registry.uri, "prompts", "show", f"{two_versions}@staging")
    by_version = run(registry.uri, "prompts", "show", f"{two_versions}/2")
    assert by_alias.exit_code == 0 and by_version.exit_code == 0, (by_alias.output, by_version.output)
    for out in (by_alias.stdout, by_version.stdout):
        assert "template (chat, 2 messages):" in out
        assert "system\n  You summarize documents.\nuser\n  Summarize {{text}} in {{words}} words." in out
        assert "text, words" in out  # variables
    assert "(@staging)" in by_alias.stdout and "(@staging)" not in by_version.stdout.splitlines()[0]


def test_show_json(registry: Registry, two_versions: str) -> None:
    result = run(registry.uri, "prompts", "show", f"{two_versions}@production", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == two_versions and data["version"] == 1 and data["alias"] == "production"
    assert data["template"] == "Summarize {{text}} briefly.\nKeep names."
    assert data["aliases"] == ["production"]
    assert data["all_aliases"] == {"production": 1, "staging": 2}
    assert data["versions"] == [1, 2]


# ------------------------------------------------------------------------------------------------ diff


def test_diff_shows_changed_template_and_model_config_lines(registry: Registry, two_versions: str) -> None:
    result = run(registry.uri, "prompts", "diff", two_versions, "1", "@staging")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"--- {two_versions}/1 template" in lines
    assert f"+++ {two_versions}/2 (@staging) template" in lines
    assert "-Summarize {{text}} briefly." in lines
    assert "-Keep names." in lines
    assert "+[system]" in lines and "+You summarize documents." in lines
    assert "+Summarize {{text}} in {{words}} words." in lines
    assert '-  "model_name": "gpt-4o-mini",' in lines
    assert '+  "model_name": "gpt-4o",' in lines
    assert '-  "temperature": 0.2' in lines and '+  "temperature": 0.5' in lines
    assert "\x1b[" not in result.stdout  # not a terminal: plain


def test_diff_of_text_versions_keeps_context_and_colours_on_a_terminal(registry: Registry, prompt_name: str) -> None:
    registry.register(prompt_name, "line one\nline two\nline three")
    registry.register(prompt_name, "line one\nline 2\nline three", alias="production")
    plain = run(registry.uri, "prompts", "diff", prompt_name, "1", "production")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.splitlines()[2:] == ["@@ -1,3 +1,3 @@", " line one", "-line two", "+line 2", " line three"]
    assert "model config" not in plain.stdout  # unchanged sections are left out
    coloured = run(registry.uri, "prompts", "diff", prompt_name, "1", "2", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert coloured.exit_code == 0, coloured.output
    assert "\x1b[" in coloured.stdout and "line 2" in coloured.stdout


def test_diff_of_identical_versions(registry: Registry, two_versions: str) -> None:
    result = run(registry.uri, "prompts", "diff", two_versions, "2", "@staging")
    assert result.exit_code == 0, result.output
    assert "no differences" in result.stdout


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_prompt(registry: Registry, prompt_name: str) -> None:
    registry.register(f"{prompt_name}-other", "x")  # the store exists
    line = assert_usage_error(run(registry.uri, "prompts", "show", prompt_name), f"no prompt '{prompt_name}'")
    assert "promptops --tracking-uri" in line and "prompts list" in line


def test_unknown_alias(registry: Registry, two_versions: str) -> None:
    assert_usage_error(
        run(registry.uri, "prompts", "show", f"{two_versions}@prod"),
        f"prompt '{two_versions}' has no alias 'prod' at {registry.uri}",
        f"list aliases with: promptops --tracking-uri {registry.uri} prompts show {two_versions}",
    )


def test_unknown_version(registry: Registry, two_versions: str) -> None:
    assert_usage_error(run(registry.uri, "prompts", "show", f"{two_versions}/9"), "has no version 9 (latest is 2)")
    assert_usage_error(run(registry.uri, "prompts", "diff", two_versions, "1", "7"), "has no version 7")
    assert_usage_error(run(registry.uri, "prompts", "alias", two_versions, "production", "5"), "has no version 5")


@pytest.mark.parametrize("reference", ["name@", "@alias", "name/0", "name/x", "/3", ""])
def test_malformed_reference(registry: Registry, two_versions: str, reference: str) -> None:
    assert_usage_error(run(registry.uri, "prompts", "show", reference), "NAME@ALIAS")


def test_malformed_diff_sides_and_names(registry: Registry, two_versions: str) -> None:
    assert_usage_error(run(registry.uri, "prompts", "diff", two_versions, "0", "1"), "versions start at 1")
    assert_usage_error(run(registry.uri, "prompts", "diff", f"{two_versions}@staging", "1", "2"), "bare prompt name")
    assert_usage_error(
        run(registry.uri, "prompts", "register", f"{two_versions}@prod", "-f", "x.txt"), "use --alias prod"
    )
    assert_usage_error(run(registry.uri, "prompts", "alias", two_versions, "7", "1"), "is a number")
    assert_usage_error(run(registry.uri, "prompts", "alias", two_versions, "v1", "1"), "cannot use alias 'v1'")


def test_unknown_prompt_for_alias(registry: Registry, prompt_name: str) -> None:
    registry.register(f"{prompt_name}-other", "x")
    assert_usage_error(run(registry.uri, "prompts", "alias", prompt_name, "production", "1"), "no prompt")


def test_unsupported_tracking_uri() -> None:
    assert_usage_error(run("foo://bar", "prompts", "list"), "unsupported tracking URI 'foo://bar'", "--tracking-uri")
    assert_usage_error(run("", "prompts", "list"), "--tracking-uri is empty")


def test_file_store_uri_is_rejected(tmp_path: Path, prompt_name: str) -> None:
    (tmp_path / "t.txt").write_text("x", encoding="utf-8")
    assert_usage_error(run("./mlruns", "prompts", "register", prompt_name, "-f", "t.txt"), "file store", "sqlite:///")


def test_missing_sqlite_store_is_reported_not_created(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'typo' / 'mlflow.db'}"
    for args in (["list"], ["show", "x"], ["diff", "x", "1", "2"], ["alias", "x", "prod", "1"]):
        assert_usage_error(run(uri, "prompts", *args), f"no MLflow database at {tmp_path / 'typo' / 'mlflow.db'}")
    assert not (tmp_path / "typo").exists()


def test_default_store_from_settings_when_missing(tmp_path: Path) -> None:
    # No --tracking-uri and nothing configured: MLflow's default sqlite:///mlflow.db in the working directory.
    assert_usage_error(run(None, "prompts", "list"), f"no MLflow database at {tmp_path.resolve()}/mlflow.db")
    assert not (tmp_path / "mlflow.db").exists()


def test_unreachable_server() -> None:
    port = closed_port()
    started = time.monotonic()
    result = run(f"http://127.0.0.1:{port}", "prompts", "show", "summarize@production")
    elapsed = time.monotonic() - started
    assert_usage_error(result, f"cannot reach the MLflow server at http://127.0.0.1:{port} (connection refused)")
    assert elapsed < 60  # MLflow's own defaults retry 5 times with back-off for minutes


def test_an_unknown_host_is_one_line_with_what_to_do() -> None:
    # Issue 17: `--tracking-uri http://mlflow:5000 datasets push` printed urllib3's NameResolutionError. The error
    # MLflow raises then, built from urllib3's own exceptions (no DNS lookup is made here).
    import socket

    from mlflow.exceptions import MlflowException
    from urllib3.connection import HTTPConnection
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    from promptops.cli._prompts import translate_mlflow_error

    cause = NameResolutionError(
        "mlflow", HTTPConnection("mlflow", 5000), socket.gaierror(-2, "Name or service not known")
    )
    url = "/api/2.0/mlflow/logged-models/search"
    error = MlflowException(
        f"API request to http://mlflow:5000{url} failed with exception {MaxRetryError(None, url, cause)}"
    )
    line = str(translate_mlflow_error(error, "http://mlflow:5000"))
    assert line == (
        "cannot reach the MLflow server at http://mlflow:5000 (unknown host name); check the host name, or point "
        "--tracking-uri or PROMPTOPS_TRACKING_URI at a running one"
    )


def test_unreachable_server_password_is_not_printed() -> None:
    port = closed_port()
    line = assert_usage_error(run(f"http://user:s3cret@127.0.0.1:{port}", "prompts", "list"), "cannot reach")
    assert "s3cret" not in line


@pytest.mark.parametrize(
    ("filename", "content", "fragment"),
    [
        ("missing.txt", None, "cannot read --template-file missing.txt: No such file or directory"),
        ("folder", "<dir>", "cannot read --template-file folder"),
        ("latin1.txt", b"caf\xe9", "not UTF-8 text"),
        ("empty.txt", "\n", "is empty"),
        ("bad.json", '[{"role": "user", "content": "x"', "malformed JSON in --template-file bad.json"),
        ("bad.yaml", "- role: [unclosed", "malformed YAML in --template-file bad.yaml"),
        ("object.json", '{"role": "user", "content": "x"}', "must hold a non-empty list of chat messages"),
        ("nocontent.json", '[{"role": "user"}]', "message 0 in nocontent.json needs a string 'role'"),
    ],
)
def test_bad_template_file(
    registry: Registry, prompt_name: str, tmp_path: Path, filename: str, content: str | bytes | None, fragment: str
) -> None:
    if content == "<dir>":
        (tmp_path / filename).mkdir()
    elif isinstance(content, bytes):
        (tmp_path / filename).write_bytes(content)
    elif content is not None:
        (tmp_path / filename).write_text(content, encoding="utf-8")
    assert_usage_error(run(registry.uri, "prompts", "register", prompt_name, "-f", filename), fragment)
    assert registry.client.get_prompt(prompt_name) is None  # nothing was registered


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("{model_name: gpt}", "malformed JSON in --model-config"),
        ("nope.json", "cannot read --model-config nope.json"),
        ("list.json", "must be a JSON object"),
        ('{"temperature": "hot"}', "invalid --model-config: temperature: Input should be a valid number"),
    ],
)
def test_bad_model_config(registry: Registry, prompt_name: str, tmp_path: Path, value: str, fragment: str) -> None:
    (tmp_path / "t.txt").write_text("x", encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    assert_usage_error(
        run(registry.uri, "prompts", "register", prompt_name, "-f", "t.txt", "--model-config", value), fragment
    )
    assert registry.client.get_prompt(prompt_name) is None


def test_typer_usage_errors_exit_2(registry: Registry, two_versions: str) -> None:
    assert run(registry.uri, "prompts", "show").exit_code == 2
    assert run(registry.uri, "prompts", "alias", two_versions, "production", "two").exit_code == 2
    assert run(registry.uri, "prompts", "register", two_versions).exit_code == 2  # --template-file is required
    assert run(registry.uri, "prompts", "nope").exit_code == 2


# ------------------------------------------------------------------------------------------------ console script


def _promptops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROMPTOPS), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=os.environ.copy()
    )


def test_console_script_reports_one_line_and_exit_2(registry: Registry, two_versions: str, tmp_path: Path) -> None:
    done = _promptops("--tracking-uri", registry.uri, "prompts", "show", f"{two_versions}@prod", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"error: prompt '{two_versions}' has no alias 'prod' at {registry.uri}; list aliases with: "
        f"promptops --tracking-uri {registry.uri} prompts show {two_versions}"
    ]


def test_console_script_unreachable_server(tmp_path: Path) -> None:
    port = closed_port()
    done = _promptops("--tracking-uri", f"http://127.0.0.1:{port}", "prompts", "list", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: cannot reach the MLflow server")


def test_console_script_registers_quietly(tmp_path: Path, prompt_name: str) -> None:
    # A fresh store: MLflow's "Creating initial MLflow database tables..." must not reach stderr.
    (tmp_path / "t.txt").write_text("Hi {{name}}", encoding="utf-8")
    done = _promptops(
        "--tracking-uri", "sqlite:///fresh.db", "prompts", "register", prompt_name, "-f", "t.txt", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == f"registered {prompt_name} version 1\n"
