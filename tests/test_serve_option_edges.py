"""`tformer serve` with generate options beyond their C++ types (issue 13, item 6): they
used to reach pybind11, whose TypeError came back as a 400 showing internal type names and
an object address. Now the 400 names the option and its range, and the server goes on."""

import pytest
import tformer

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import test_translator as tt  # noqa: E402
from tformer.serve import ServeLimits, create_app  # noqa: E402

INTERNALS = ("pybind11", "object at 0x", "incompatible function arguments", "Invoked with", "_core.")


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    return tformer.Translator(str(tt.build_marian_dir(tmp_path_factory, "edges", seed=7)),
                              beam_size=2, max_length=8)


@pytest.mark.parametrize("option, value, shown", [("seed", 2**64, "2**64 - 1"), ("seed", 2**70, "2**64 - 1"),
                                                  ("min_length", 2**64, "2**63 - 1"),
                                                  ("sampling_topk", 2**64, "2**63 - 1"),
                                                  ("no_repeat_ngram_size", 2**63, "2**63 - 1")])
def test_option_beyond_its_type_is_a_named_400(translator, option, value, shown):
    with TestClient(create_app(translator, ServeLimits())) as c:
        r = c.post("/translate", json={"texts": ["Le chat."], "do_sample": True, option: value})
        assert 400 <= r.status_code < 500, r.text
        detail = r.json()["detail"]
        assert option in detail and shown in detail, detail
        assert not any(s in detail for s in INTERNALS), detail
        assert c.post("/translate", json={"texts": ["Le chat."], "seed": 2**64 - 1, "do_sample": True}).status_code == 200
