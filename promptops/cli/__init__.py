"""The `promptops` command line (typer + rich). Not imported by `import promptops`.

Run `promptops --help`. `main()` is the console-script entry point; `app` is the typer application, for
`typer.testing.CliRunner` and for adding commands.
"""

from ._app import app, main
from ._captures import captures_app
from ._prompts import prompts_app

app.add_typer(prompts_app, name="prompts")
app.add_typer(captures_app, name="captures")

__all__ = ["app", "main"]
