"""The `promptops` command line (typer + rich). Not imported by `import promptops`.

Run `promptops --help`. `main()` is the console-script entry point; `app` is the typer application, for
`typer.testing.CliRunner` and for adding commands.
"""

from ._app import app, main
from ._captures import captures_app
from ._datasets import datasets_app
from ._prompts import prompts_app
from ._replay import replay
from ._rollout import rollout_app

app.add_typer(prompts_app, name="prompts")
app.add_typer(captures_app, name="captures")
app.add_typer(datasets_app, name="datasets")
app.command("replay")(replay)
app.add_typer(rollout_app, name="rollout")

__all__ = ["app", "main"]
