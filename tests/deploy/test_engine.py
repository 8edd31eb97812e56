"""The batching engine: rows of any length decoded together equal one-at-a-time generate()."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from tailor.inference.backends import KVState
from tailor.inference.engine import Engine, GenRequest
from tailor.models.transformer import Transformer, TransformerConfig


class ModelBackend:
    """A bare Transformer behind the TailorBackend batching methods (no tokenizer needed)."""

    def __init__(self, model: Transformer, eos: int = 99):
        from tailor.inference.backends import TailorBackend

        self.model, self.device, self.block_size, self.eos_ids, self.pad_id = model, "cpu", model.config.block_size, {eos}, 0
        self.generates = True
        self.prefill = TailorBackend.prefill.__get__(self)
        self.step = TailorBackend.step.__get__(self)


def run_all(engine: Engine, requests: list[GenRequest], stagger: float = 0.0) -> None:
    done = threading.Semaphore(0)
    for r in requests:
        r.emit = lambda kind, v: done.release() if kind in ("done", "error") else None
        assert engine.submit(r) == "ok"
        time.sleep(stagger)  # later requests join a batch that is already decoding
    for _ in requests:
        assert done.acquire(timeout=60)


@pytest.mark.parametrize("arch", [{}, {"positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 2},
                                  {"window": 6}], ids=["gpt2", "llama", "sliding-window"])
def test_continuous_batching_equals_sequential_generation(arch):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=100, block_size=48, n_layer=2, n_head=4, n_embd=32, **arch)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    prompts = [torch.randint(0, 99, (n,)).tolist() for n in (3, 7, 1, 12, 5, 9, 2, 20, 4, 6, 46)]
    engine = Engine(ModelBackend(model), max_batch=4)
    requests = [GenRequest(p, 30, None) for p in prompts]
    run_all(engine, requests, stagger=0.002)
    for p, r in zip(prompts, requests):
        assert r.out == model.generate(torch.tensor([p]), 30, stop_ids={99})[0, len(p):].tolist()
    assert len(requests[-1].out) == 2  # stops at the block size like generate()
    assert engine.drain(5)


def test_merge_and_select_keep_rows_right_aligned():
    def state(lengths, width):
        mask = torch.tensor([[False] * (width - n) + [True] * n for n in lengths])
        kv = [[torch.arange(len(lengths) * width, dtype=torch.float).view(len(lengths), 1, width, 1)] * 2]
        return KVState(kv, mask, torch.tensor(lengths))

    merged = state([2, 3], 3).merge(state([5], 5))
    assert merged.mask.tolist() == [[False, False, False, True, True], [False, False, True, True, True], [True] * 5]
    assert merged.kv[0][0][0, 0, :, 0].tolist() == [0, 0, 0, 1, 2]
    kept = merged.select([0, 1])
    assert kept.mask.shape == (2, 3) and kept.pos.tolist() == [2, 3]  # the all-padding columns are trimmed


def test_an_unpadded_batch_keeps_no_mask_until_a_merge_needs_one():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=100, block_size=48, n_layer=2, n_head=4, n_embd=32,
                                          tie_weights=False)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30)  # sharp, untied logits: the tokens vary, and a wrong position changes them
    backend = ModelBackend(model)
    lone, logits = backend.prefill([[5, 6, 7]])
    same, _ = backend.prefill([[1, 2, 3, 4], [5, 6, 7, 8]])  # one length: no padding either
    assert lone.mask is None and same.mask is None and same.select([1]).mask is None
    ids, expected = [5, 6, 7], model.generate(torch.tensor([[5, 6, 7]]), 6)[0, 3:].tolist()
    assert len(set(expected)) > 3
    out = []
    for _ in range(6):  # generate()'s own path, token for token
        out.append(int(logits.argmax(-1)))
        logits = backend.step(lone, torch.tensor([out[-1]]))
    assert out == expected and lone.mask is None and lone.pos.tolist() == [len(ids) + 6]
    merged = same.merge(lone)  # 4 columns and 9: the shorter is padded on the left
    assert merged.mask.tolist() == [[False] * 5 + [True] * 4] * 2 + [[True] * 9]


def test_queue_bound_cancellation_and_draining():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=100, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    engine = Engine(ModelBackend(model, eos=-1), max_batch=1, max_queue=1)
    events: list[tuple[str, object]] = []
    long = GenRequest([1, 2], 60, lambda k, v: events.append((k, v)))
    waiting = GenRequest([3], 5, lambda k, v: events.append((k, v)))
    assert engine.submit(long) == "ok" and engine.submit(waiting) == "ok"
    assert engine.submit(GenRequest([4], 5, lambda k, v: None)) == "full"
    long.cancelled = True  # the client went away: its slot frees at the next step
    assert engine.drain(10)
    assert ("done", "cancelled") in events and len(waiting.out) == 5
    assert engine.submit(GenRequest([5], 5, lambda k, v: None)) == "stopped"


def test_a_temperature_too_small_to_divide_by_decodes_greedily():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=100, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    engine = Engine(ModelBackend(model), max_batch=2)
    tiny, greedy = GenRequest([1, 2, 3], 8, None, temperature=1e-300), GenRequest([1, 2, 3], 8, None)
    run_all(engine, [tiny, greedy])
    assert tiny.out == greedy.out and len(tiny.out) == 8
    engine.drain(5)


def test_a_top_p_that_underflows_keeps_the_most_likely_token():
    from tailor.sampling import sample_next

    logits = torch.tensor([[0.1, 3.0, 0.2]])
    for top_p in (5e-324, 1e-50, 1e-9):
        assert sample_next(logits, 1.0, top_p, torch.Generator().manual_seed(0)).item() == 1


def test_an_empty_prompt_starts_from_end_of_text(finished_run):
    from tailor.inference.backends import TailorBackend

    _, run_dir = finished_run
    backend = TailorBackend(run_dir / "train" / "model")
    backend.format.card = {**backend.format.card, "format": "text"}
    assert backend.format.encode_prompt("") == [backend.format.codec.eos_id]


def test_requests_being_prefilled_still_hold_their_places():
    """While the engine prefills what it took from the queue, those requests count against the bound."""
    torch.manual_seed(0)
    backend = ModelBackend(Transformer(TransformerConfig(vocab_size=100, block_size=32, n_layer=1, n_head=2, n_embd=16)))
    prefill, entered = backend.prefill, threading.Event()

    def slow_prefill(rows):
        entered.set()
        time.sleep(0.5)
        return prefill(rows)

    backend.prefill = slow_prefill
    engine = Engine(backend, max_batch=1, max_queue=0)
    first = GenRequest([1, 2, 3], 2, lambda kind, v: None)
    assert engine.submit(first) == "ok"
    assert entered.wait(5) and engine.queue_depth == 0 and engine.running == 0  # taken, being prefilled
    assert engine.submit(GenRequest([4, 5], 2, lambda kind, v: None)) == "full"
    first.cancelled = True
    engine.drain(10)
