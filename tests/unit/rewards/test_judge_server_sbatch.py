"""slurm/judge_server.sbatch without a cluster: a stub `vllm` serves /health on the port it is given; the template
prints the base_url once the server answers, and a TERM stops the server."""

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SBATCH = ROOT / "slurm" / "judge_server.sbatch"
# `vllm serve MODEL --host H --port P ...`: records its arguments, answers /health until TERM
STUB_VLLM = """#!{python}
import http.server, os, sys
open(os.environ["RECORD"], "w").write(" ".join(sys.argv[1:]) + "\\nkey=" + os.environ.get("VLLM_API_KEY", "") + "\\n")
if os.environ.get("STUB_FAIL"):
    sys.exit(3)
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def judge_job(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "vllm").write_text(STUB_VLLM.format(python=sys.executable))
    (stubs / "vllm").chmod(0o755)
    record = tmp_path / "record.txt"

    def start(*args, **env):
        environ = {**os.environ, "PATH": f"{stubs}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
                   "RECORD": str(record), "SLURM_JOB_ID": "778", "SLURM_GPUS_ON_NODE": "h100:4",
                   "JUDGE_HOST": "127.0.0.1", "JUDGE_POLL_S": "0.1", **env}  # fmt: skip
        return subprocess.Popen(["bash", str(SBATCH), *args], cwd=tmp_path, env=environ, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    return start, record


def test_prints_base_url_when_ready_and_stops_on_term(judge_job, tmp_path):
    start, record = judge_job
    port = _free_port()
    url_file = tmp_path / "judge.env"
    job = start("Qwen/Qwen2.5-7B-Instruct", "--", "--max-model-len", "8192", JUDGE_PORT=str(port),
                JUDGE_NAME="judge", JUDGE_API_KEY="k-123", JUDGE_URL_FILE=str(url_file))  # fmt: skip
    lines = []
    for line in job.stdout:  # ends when the script exits
        lines.append(line)
        if "judge ready" in line:
            break
    assert f"[open-grpo] judge ready: base_url http://127.0.0.1:{port}/v1 model judge\n" in lines, lines
    assert url_file.read_text() == f"JUDGE_BASE_URL=http://127.0.0.1:{port}/v1\nJUDGE_MODEL=judge\n"
    args, key = record.read_text().splitlines()
    assert args == (f"serve Qwen/Qwen2.5-7B-Instruct --host 0.0.0.0 --port {port} --tensor-parallel-size 4 "
                    "--served-model-name judge --max-model-len 8192")  # fmt: skip
    assert key == "key=k-123"  # through the environment, not the command line
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=20) != 0
    assert "stopping the judge server" in job.stdout.read()
    with pytest.raises(OSError):  # the server is gone
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_server_that_dies_first_ends_the_job_with_its_code(judge_job):
    start, _ = judge_job
    job = start("m", STUB_FAIL="1", JUDGE_PORT=str(_free_port()))
    assert job.wait(timeout=20) == 3
    assert "exited with code 3 before it answered" in job.stderr.read()


def test_usage_without_model(judge_job):
    start, _ = judge_job
    job = start()
    assert job.wait(timeout=20) == 2 and "usage: sbatch slurm/judge_server.sbatch MODEL" in job.stderr.read()


def test_shell_checks():
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is not installed (.ci/run installs it)")
        pytest.skip("shellcheck not installed")
    out = subprocess.run(["shellcheck", str(SBATCH)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
