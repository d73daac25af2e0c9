"""MLflow's model price catalog is not downloaded because of promptops' spans (issue 10's outbound-traffic item).

MLflow 3.17 prices a span with a model name, a provider and token usage while storing it, and downloads the
provider's price catalog for that (from github.com by default). In a new process, MLflow's default catalog address
is pointed at a 127.0.0.1 listener standing in for github.com (MLflow's own setting object, its default changed:
nothing else of MLflow is touched), and a tracked call reports usage into a sqlite tracking store:

* the user did not set `MLFLOW_MODEL_CATALOG_URI`: the listener sees no connection, and the span is still priced
  (from MLflow's bundled catalog);
* the user set it (here to the listener): promptops leaves it, and MLflow fetches from it (the positive control:
  the scenario does reach for the catalog when allowed to).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = """
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow.environment_variables as variables

requests = []


class Catalog(BaseHTTPRequestHandler):
    def do_GET(self):
        requests.append(self.path)
        body = b'{"models": {}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Catalog)
threading.Thread(target=server.serve_forever, daemon=True).start()
address = f"http://127.0.0.1:{server.server_address[1]}/catalog"
variables.MLFLOW_MODEL_CATALOG_URI.default = address  # MLflow's default address, as if github.com were here
if sys.argv[2] == "user-set":
    os.environ["MLFLOW_MODEL_CATALOG_URI"] = address  # the application chose a catalog itself

import promptops

promptops.configure(tracking_uri=sys.argv[1], trace_exporter="mlflow", capture=None)


@promptops.track(prompt="priced", fallback="Answer {{ q }}")
def answer(q, *, prompt):
    promptops.record_usage(input_tokens=1000, output_tokens=200, model="gpt-4o-mini", provider="openai")
    return "an answer"


answer("why?")
flushed = promptops.flush(120)
from mlflow import MlflowClient

(trace,) = MlflowClient(sys.argv[1]).search_traces(locations=["0"])
print(json.dumps({
    "flushed": flushed,
    "requests": requests,
    "variable": os.environ.get("MLFLOW_MODEL_CATALOG_URI"),
    "cost": trace.data.spans[0].attributes.get("mlflow.llm.cost"),
    "exported": promptops.stats()["spans_exported"],
}))
"""


def run_child(tmp_path: Path, mode: str) -> dict[str, object]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROMPTOPS_", "PYTEST_"))
        and key not in ("MLFLOW_TRACKING_URI", "MLFLOW_MODEL_CATALOG_URI")
    }
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    uri = f"sqlite:///{tmp_path / f'{mode}.db'}"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), uri, mode],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"child exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    result: dict[str, object] = json.loads(lines[-1])
    return result


def test_promptops_export_does_not_download_the_price_catalog(tmp_path: Path) -> None:
    result = run_child(tmp_path, "default")
    assert result["flushed"] and result["exported"] == 1
    assert result["requests"] == []  # no connection to the (stand-in) catalog address
    assert result["variable"] == ""  # MLflow's switch for its bundled catalog, set because the user had not
    cost = result["cost"]
    assert isinstance(cost, dict) and cost["total_cost"] > 0  # priced all the same, from the bundled catalog


def test_a_catalog_the_user_chose_is_left_alone(tmp_path: Path) -> None:
    result = run_child(tmp_path, "user-set")
    assert result["flushed"] and result["exported"] == 1
    assert result["requests"] == ["/catalog/openai.json"]  # MLflow fetched from the address the user set
    assert str(result["variable"]).endswith("/catalog")
