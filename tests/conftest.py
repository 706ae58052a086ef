import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def research_data_dir() -> Path:
    """The shared research data directory (POISONLAB_DATA_DIR); skips the test when absent."""
    value = os.environ.get("POISONLAB_DATA_DIR")
    if not value or not Path(value, "sst2").is_dir():
        pytest.skip("research data directory not available (set POISONLAB_DATA_DIR)")
    return Path(value)


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    from synthetic import synthetic_splits, write_jsonl_split
    return write_jsonl_split(tmp_path / "synthetic", synthetic_splits())


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from two threads and lose a lot when the cores are busy."""
    import torch
    torch.set_num_threads(1)
    yield
