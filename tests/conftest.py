import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPEN_GRPO_CACHE", str(ROOT / ".cache" / "open_grpo"))
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe (the demo's keys, updated with `changes`) to a temp file and return its path."""
    import yaml

    def write(changes=None, drop=(), name="recipe.yaml"):
        config = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
        config["output_dir"] = str(tmp_path / "out")
        for key in drop:
            config.pop(key, None)
        config.update(changes or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture(autouse=True)
def _restore_environ():
    """Undo what a test leaves in os.environ: TRL's colocated setup exports RANK, WORLD_SIZE, MASTER_PORT, ... for
    vLLM, and a later subprocess inheriting them would try to join that (gone) process group."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """`open_grpo.train.main` installs its stop handlers (SIGUSR1, SIGTERM, SIGINT) in the process: put pytest's back,
    so Ctrl-C still stops the suite after a test trained in-process."""
    import signal

    signals = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
    saved = {s: signal.getsignal(s) for s in signals}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def shared_by_reference(monkeypatch):
    """CUDA IPC stand-in for the engine in its own process: the handle is a key to the trainer's own buffer (the
    engine double's worker runs in the test's process, on CPU)."""
    from open_grpo.engine import own_process, worker_extension

    buffers = {}

    def share(tensor):
        key = str(len(buffers)).encode()
        buffers[key] = tensor
        return key

    monkeypatch.setattr(own_process, "share", share)
    monkeypatch.setattr(worker_extension, "open_shared", lambda handle, device_index: buffers[handle])
    return buffers
