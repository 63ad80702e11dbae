"""Shared test helpers: the shared fixtures (never copied into the project)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


def shared_fixture(name: str) -> Path:
    """Path of a file in ../shared/fixtures: skip where it is absent, fail under CI."""
    path = SHARED_FIXTURES / name
    if not path.exists():
        msg = f"shared fixture {path} is absent (../shared is not beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def alpaca_fixture() -> Path:
    """999 real Stanford Alpaca records."""
    return shared_fixture("alpaca_en_demo.json")


@pytest.fixture(scope="session")
def llama2_tokenizer() -> Path:
    """The real Llama 2 SentencePiece model (32,000 pieces)."""
    return shared_fixture("llama2_tokenizer.model")


@pytest.fixture(scope="session")
def mindformers_configs() -> Path:
    """MindFormers' own Llama2-7B finetune and LoRA YAMLs (v1.5.0)."""
    return shared_fixture("mindformers_configs")
