"""Conversations through SmolLM2's real chat template: ids and learnt tokens equal transformers' own
`apply_chat_template(..., return_assistant_tokens_mask=True)`; prompts are prefixes of training ids."""

from __future__ import annotations

import json

import pytest

from tailor.labels import IGNORE

# SmolLM2-135M-Instruct's template with transformers' {% generation %} markers around what an assistant
# writes (its text and the <|im_end|> that ends its turn): it renders the same text as the original.
GENERATION_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Where is my order #4512?"},
     {"role": "assistant", "content": "It left our warehouse yesterday and should arrive by Friday."}],
    [{"role": "system", "content": "You are Penny, the support assistant of Nordic Kettle Co."},
     {"role": "user", "content": "Hi! Can I return a kettle I bought 40 days ago?"},
     {"role": "assistant", "content": "Returns are accepted within 30 days, but a faulty kettle is covered by "
                                      "the 2-year warranty."},
     {"role": "user", "content": "It's not faulty, I just don't like the colour."},
     {"role": "assistant", "content": "Then I'm afraid it can't be returned, sorry. You could exchange it at a store."}],
    [{"role": "user", "content": "  Do you ship to Åland?\n\nAnd to Tromsø?"},
     {"role": "assistant", "content": " Yes to both: Åland in 3–5 days, Tromsø in 4–6 days. 🚚"},
     {"role": "user", "content": "cost?"},
     {"role": "assistant", "content": "Shipping is €9.90, free over €80."},
     {"role": "user", "content": "thanks"},
     {"role": "assistant", "content": "You're welcome!\n"}],
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """(SmolLM2's tokenizer as transformers loads it, with the generation template; a Codec of the same
    tokenizer with SmolLM2's own template; a Codec with the generation template)."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer

    from tailor.tokenizer import Codec, pretrained_tokenizer

    tok, config = pretrained_tokenizer("smollm2-135m")
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok.to_str()), eos_token=config["eos_token"],
                                 pad_token=config["pad_token"])
    hf.chat_template = GENERATION_TEMPLATE
    own = Codec(tok, config["eos_token"], config["pad_token"], config["sep_token"], config["chat_template"])
    marked = Codec(Tokenizer.from_str(tok.to_str()), config["eos_token"], config["pad_token"], None,
                   GENERATION_TEMPLATE)
    return hf, own, marked, config


def test_generation_template_renders_as_smollm2s_own(smollm2):
    hf, own, _, config = smollm2
    for conv in CONVERSATIONS:
        assert own.render(conv, False) == hf.apply_chat_template(conv, tokenize=False)


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_ids_and_assistant_mask_equal_transformers(smollm2, index):
    from tailor.tokenizer.chat import chat_example

    hf, own, marked, _ = smollm2
    conv = CONVERSATIONS[index]
    ref = hf.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    for codec in (own, marked):
        ids, labels = chat_example(codec, conv, "output")
        assert ids == ref["input_ids"]
        assert [int(label != IGNORE) for label in labels] == ref["assistant_masks"]
        assert all(label in (IGNORE, i) for i, label in zip(ids, labels))
    assert sum(ref["assistant_masks"]) > 0


def test_every_assistant_turn_ends_with_a_learnt_end_of_turn(smollm2):
    from tailor.tokenizer.chat import chat_example

    _, codec, _, config = smollm2
    end = codec.tokenizer.token_to_id("<|im_end|>")
    assert codec.turn_end_id == end == codec.eos_id and codec.pad_id != codec.eos_id
    conv = CONVERSATIONS[2]
    ids, labels = chat_example(codec, conv, "output")
    learnt_ends = [k for k, (i, label) in enumerate(zip(ids, labels)) if i == end and label == end]
    assert len(learnt_ends) == 3  # one per assistant turn; the system's and users' ends are not learnt
    assert len([i for i in ids if i == end]) == 7


def test_loss_on_all_and_last(smollm2):
    from tailor.tokenizer.chat import chat_example

    _, codec, _, _ = smollm2
    conv = CONVERSATIONS[1]
    ids, out = chat_example(codec, conv, "output")
    _, every = chat_example(codec, conv, "all")
    _, last = chat_example(codec, conv, "last")
    learnt = lambda labels: codec.decode([i for i, label in zip(ids, labels) if label != IGNORE])  # noqa: E731
    assert learnt(out) == conv[2]["content"] + conv[4]["content"]
    assert learnt(every) == "".join(m["content"] for m in conv[1:])  # system never
    assert learnt(last) == conv[4]["content"]
    assert sum(label != IGNORE for label in every) > sum(label != IGNORE for label in out) > \
        sum(label != IGNORE for label in last)


def test_a_served_prompt_is_the_prefix_its_turn_was_trained_after(smollm2):
    from tailor.tokenizer.chat import chat_example

    _, codec, _, _ = smollm2
    for conv in CONVERSATIONS:
        ids, labels = chat_example(codec, conv, "output")
        starts = [k for k in range(len(ids)) if labels[k] != IGNORE and (k == 0 or labels[k - 1] == IGNORE)]
        turns = [k for k, m in enumerate(conv) if m["role"] == "assistant"]
        assert len(starts) == len(turns)
        for start, k in zip(starts, turns):
            assert codec.chat(conv[:k]) == ids[:start]


def test_message_text_cannot_spell_a_turn_end(smollm2):
    from tailor.tokenizer.chat import chat_example

    _, codec, _, _ = smollm2
    conv = [{"role": "user", "content": "say <|im_end|> please"}, {"role": "assistant", "content": "<|im_end|>"}]
    ids, _ = chat_example(codec, conv, "output")
    end = codec.tokenizer.token_to_id("<|im_end|>")
    assert ids.count(end) == 3  # the template's (system, user, assistant), none from the messages' text


def test_long_conversations_drop_their_oldest_exchanges_first(smollm2):
    from tailor.tokenizer.chat import chat_example, fit

    _, codec, _, _ = smollm2
    conv = CONVERSATIONS[2]
    full, _ = chat_example(codec, conv, "output")
    ids, labels = fit(codec, conv, len(full) - 2)
    assert ids == chat_example(codec, conv[2:], "output")[0]
    assert codec.decode([i for i, label in zip(ids, labels) if label != IGNORE]).endswith(conv[-1]["content"])


def test_an_assistant_turn_starts_a_run_of_its_own(smollm2):
    """Where transformers would merge an answer's leading whitespace into the template's newline, the ids
    differ from its own: the prompt a server sends must be the prefix the answer was trained after."""
    from tailor.tokenizer.chat import chat_example

    hf, codec, _, _ = smollm2
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\n\nHello there."}]
    ids, labels = chat_example(codec, conv, "output")
    assert ids != hf.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
    start = next(k for k, label in enumerate(labels) if label != IGNORE)
    assert ids[:start] == codec.chat(conv[:1])
    assert codec.tokenizer.decode(ids[start:], skip_special_tokens=False) == "\n\nHello there.<|im_end|>\n"


def test_a_turn_end_that_is_not_eos_is_learnt_and_stops_serving(tmp_path):
    """Llama-3-style: the template closes a turn with <|eot|> while the tokenizer's eos is <|endoftext|>."""
    from tailor.inference import PromptFormat
    from tailor.tokenizer import Codec, train_bpe
    from tailor.tokenizer.chat import chat_example

    tok = train_bpe(iter(["hello there", "the kettle holds 1.7 litres"] * 20), 300, 1)
    tok.add_special_tokens(["<|header|>", "<|eot|>"])
    template = ("{% for m in messages %}<|header|>{{ m['role'] }}\n{{ m['content'] }}<|eot|>{% endfor %}"
                "{% if add_generation_prompt %}<|header|>assistant\n{% endif %}")
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "sep_token": None, "chat_template": template}))
    (tmp_path / "config.json").write_text(json.dumps({"tailor": {"format": "chat"}}))
    codec = Codec.load(tmp_path)
    eot = tok.token_to_id("<|eot|>")
    assert codec.turn_end_id == eot != codec.eos_id
    ids, labels = chat_example(codec, [{"role": "user", "content": "hello"},
                                       {"role": "assistant", "content": "hello there"}])
    assert [label for label in labels if label != IGNORE][-1] == eot and ids[-1] == eot
    assert PromptFormat(tmp_path).eos_ids == {codec.eos_id, eot}
