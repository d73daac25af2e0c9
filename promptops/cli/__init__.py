"""The `promptops` command line (typer + rich). Not imported by `import promptops`.

Run `promptops --help`. `main()` is the console-script entry point; `app` is the typer application, for
`typer.testing.CliRunner` and for adding commands.
"""

from ._app import app, main
from ._prompts import prompts_app

app.add_typer(prompts_app, name="prompts")

__all__ = ["app", "main"]
