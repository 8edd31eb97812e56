"""The official openai client against a real server: completions, chat, streaming, sampling options."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from tailor.inference import Generator

PROMPTS = ["what colour is item 5", "item 3 colour?", "tell me the colour of item 11", "x", "colour of item 7 please"]


@pytest.fixture(scope="module")
def client(served_chatty, keys) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served_chatty.url}/v1", api_key=keys["infer"], max_retries=0)


@pytest.fixture(scope="module")
def reference(chatty_model) -> Generator:
    return Generator(chatty_model)


def test_completion_equals_sequential_greedy_generation(client, reference):
    for prompt in PROMPTS[:2]:
        res = client.completions.create(model="chatty", prompt=prompt, max_tokens=12, temperature=0)
        expected = reference.complete(prompt, 12)
        assert res.choices[0].text == expected.text and res.choices[0].text
        assert res.usage.completion_tokens == expected.completion_tokens
        assert res.usage.prompt_tokens == expected.prompt_tokens
        assert res.choices[0].finish_reason == expected.finish_reason


def test_concurrent_requests_are_batched_and_each_equals_its_own_generation(client, reference):
    """Different prompt lengths decoded together (left padding, per-row positions) change no token."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda p: client.completions.create(model="chatty", prompt=p, max_tokens=20,
                                                                   temperature=0).choices[0].text, PROMPTS * 2))
    assert texts == [reference.complete(p, 20).text for p in PROMPTS * 2]


def test_several_prompts_in_one_request(client, reference):
    res = client.completions.create(model="chatty", prompt=PROMPTS[:3], max_tokens=6, temperature=0)
    assert [c.text for c in res.choices] == [reference.complete(p, 6).text for p in PROMPTS[:3]]
    assert [c.index for c in res.choices] == [0, 1, 2]


def test_chat_answers_the_last_user_message(client, reference):
    res = client.chat.completions.create(model="chatty", max_tokens=10, temperature=0, messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"}, {"role": "user", "content": PROMPTS[0]}])
    assert res.choices[0].message.role == "assistant"
    assert res.choices[0].message.content == reference.complete(PROMPTS[0], 10).text
    assert res.object == "chat.completion" and res.id.startswith("chatcmpl-")


def test_streaming_completion_and_chat_join_to_the_whole_answer(client, reference):
    expected = reference.complete(PROMPTS[2], 16).text
    chunks = list(client.completions.create(model="chatty", prompt=PROMPTS[2], max_tokens=16, temperature=0,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert len([c for c in chunks if c.choices[0].text]) > 1  # it really streamed, token by token
    assert chunks[-1].choices[0].finish_reason == "length"
    stream = client.chat.completions.create(model="chatty", max_tokens=16, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": PROMPTS[2]}])
    deltas = [c.choices[0].delta for c in stream]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == expected


def test_stop_strings_cut_the_answer_and_end_the_stream(client, reference):
    full = reference.complete(PROMPTS[1], 20).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    res = client.completions.create(model="chatty", prompt=PROMPTS[1], max_tokens=20, temperature=0, stop=[stop])
    assert res.choices[0].text == full[: full.index(stop)] and res.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="chatty", prompt=PROMPTS[1], max_tokens=20, temperature=0,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == full[: full.index(stop)]


def test_sampling_follows_seed_temperature_and_top_p(client):
    def ask(**kw):
        return client.completions.create(model="chatty", prompt=PROMPTS[0], max_tokens=12, **kw).choices[0].text

    assert ask(temperature=1.5, seed=7) == ask(temperature=1.5, seed=7)
    assert len({ask(temperature=1.5, seed=s) for s in range(4)}) > 1
    assert ask(temperature=1.5, top_p=1e-6, seed=3) == ask(temperature=0)  # the nucleus is the top token alone


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["chatty"]


def test_errors_come_back_as_openai_errors(client, served_chatty, keys):
    url = served_chatty.url
    with pytest.raises(openai.UnprocessableEntityError, match="at most"):
        client.completions.create(model="chatty", prompt="item " * 200, max_tokens=4)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="tlr_nope_nope", max_retries=0).models.list()
    res = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 0},
                     headers={"Authorization": f"Bearer {keys['infer']}"})
    assert res.status_code == 422 and "max_tokens" in res.json()["error"]["message"]
