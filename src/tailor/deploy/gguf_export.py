"""GGUF export of a Llama-family model (ours with rope/RMSNorm/SwiGLU, or a transformers Llama folder such as
a merged SmolLM2), in float32, with its byte-level BPE tokenizer, for llama.cpp and transformers' GGUF reader.

Tensor names and the rotary permutation of the query/key rows follow llama.cpp's converter, which
transformers' reader undoes when it loads the file back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tailor.errors import TailorError

_LAYER = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
          "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
          "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
          "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
          "mlp.down_proj.weight": "ffn_down.weight"}


def permute_rotary(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's row order for rotary heads (interleaved halves), as its HF converter writes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_model(model_dir: Path):
    """A transformers LlamaForCausalLM for a Tailor (Llama-shaped) folder or a transformers Llama folder."""
    from tailor.models import FAMILIES
    from tailor.models.family import CachedDecoder

    config = json.loads((model_dir / "config.json").read_text())
    family = FAMILIES.get(config.get("model_type"), (None,))[0]
    if family is not None and issubclass(family, CachedDecoder):  # our transformer: written as HF Llama first
        from tailor.deploy.hf_export import hf_family, to_hf
        from tailor.models import load_model

        model = load_model(model_dir)
        if hf_family(model.config) != "llama":
            raise TailorError(f"{model_dir}: GGUF export needs a Llama-family model (positions: rope, norm: rmsnorm, "
                              "activation: swiglu); this one is GPT-2 shaped: export it with --format hf or onnx")
        if model.config.bias:
            raise TailorError(f"{model_dir}: GGUF's Llama layout has no biases; train with model.arch.bias: false")
        return to_hf(model)
    if config.get("model_type") != "llama":
        raise TailorError(f"{model_dir}: GGUF export supports Llama-family models; this is {config.get('model_type')!r}")
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, dtype=torch.float32).eval()


def _tokenizer_fields(model_dir: Path) -> dict:
    """Tokens, token types, merges and special ids of a byte-level BPE tokenizer.json."""
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    if tok["model"]["type"] != "BPE":
        raise TailorError(f"{model_dir}/tokenizer.json: GGUF export writes byte-level BPE tokenizers; this is "
                          f"{tok['model']['type']}")
    vocab = dict(tok["model"]["vocab"])
    special = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    vocab.update(special)
    tokens = [""] * (max(vocab.values()) + 1)
    for text, i in vocab.items():
        tokens[i] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    cfg_path = model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    ids = {name: vocab.get(cfg.get(f"{name}_token") or "") for name in ("eos", "pad", "bos")}
    return {"tokens": tokens, "types": [3 if t in special else 1 for t in tokens], "merges": merges, "ids": ids,
            "chat_template": cfg.get("chat_template")}


@torch.no_grad()
def export_gguf(model_dir: Path, out: Path) -> dict:
    """out/model.gguf (float32) with the tokenizer; loads with transformers' gguf_file= and in llama.cpp."""
    import gguf

    hf = _llama_model(Path(model_dir))
    c = hf.config
    tok = _tokenizer_fields(Path(model_dir))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(Path(model_dir).name)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(float((c.rope_parameters or {}).get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    w.add_token_merges(tok["merges"])
    w.add_add_bos_token(False)
    for name, value in tok["ids"].items():
        if value is not None:
            getattr(w, f"add_{name}_token_id")(value)
    if tok["chat_template"]:
        w.add_chat_template(tok["chat_template"])
    state = hf.state_dict()
    tensors = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    if not c.tie_word_embeddings:
        tensors["output.weight"] = state["lm_head.weight"]
    for i in range(c.num_hidden_layers):
        for hf_name, gguf_name in _LAYER.items():
            t = state[f"model.layers.{i}.{hf_name}"]
            if hf_name.startswith("self_attn.q_proj"):
                t = permute_rotary(t, c.num_attention_heads)
            elif hf_name.startswith("self_attn.k_proj"):
                t = permute_rotary(t, c.num_key_value_heads)
            tensors[f"blk.{i}.{gguf_name}"] = t
    for name, t in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(t.float().numpy()))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"format": "gguf", "path": str(path), "tensors": len(tensors), "dtype": "float32"}
