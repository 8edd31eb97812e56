"""Our Transformer as the equivalent Hugging Face model: GPT-2 settings -> GPT2LMHeadModel,
Llama settings (rope, RMSNorm, SwiGLU) -> LlamaForCausalLM. The saved folder is what vLLM and TGI
serve, what transformers' generate() runs, and the input of the GGUF writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tailor.errors import TailorError
from tailor.models.transformer import Transformer, TransformerConfig

GPT2_SETTINGS = {"positions": "learned", "norm": "layernorm", "activation": "gelu_tanh", "bias": True, "window": None}
LLAMA_SETTINGS = {"positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "window": None}


def hf_family(cfg: TransformerConfig) -> str:
    """'gpt2' or 'llama': the HF architecture with the same arithmetic; an error naming what differs."""
    gqa = (cfg.n_kv_head or cfg.n_head) != cfg.n_head
    if not gqa and all(getattr(cfg, k) == v for k, v in GPT2_SETTINGS.items()):
        return "gpt2"
    if all(getattr(cfg, k) == v for k, v in LLAMA_SETTINGS.items()):
        return "llama"
    wanted = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in s.items())
                       for name, s in (("GPT-2", GPT2_SETTINGS), ("Llama", LLAMA_SETTINGS)))
    raise TailorError(f"this model's settings (positions={cfg.positions}, norm={cfg.norm}, activation="
                      f"{cfg.activation}, window={cfg.window}) have no Hugging Face equivalent; needs {wanted}")


def _gpt2(model: Transformer):
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    hf_cfg = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                        n_head=c.n_head, n_inner=c.mlp_hidden, activation_function="gelu_new",
                        layer_norm_epsilon=c.norm_eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        tie_word_embeddings=c.tie_weights)
    hf = GPT2LMHeadModel(hf_cfg)
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    state = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            state[key] = value
            continue
        state[f"transformer.{key}"] = value.t().contiguous() if key.endswith(conv1d) else value  # Conv1D: (in, out)
    hf.load_state_dict(state, strict=False)
    missing = set(hf.state_dict()) - set(state) - {k for k in hf.state_dict() if k.endswith((".attn.bias", ".attn.masked_bias"))}
    if missing:
        raise TailorError(f"GPT-2 export left weights unset: {sorted(missing)[:4]}")
    return hf


def _llama(model: Transformer):
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    kv = c.n_kv_head or c.n_head
    hidden = model.h[0].mlp.c_proj.in_features
    hf_cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=hidden,
                         num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=kv,
                         max_position_embeddings=c.block_size, rms_norm_eps=c.norm_eps,
                         tie_word_embeddings=c.tie_weights, attention_bias=c.bias, mlp_bias=c.bias,
                         rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
                         bos_token_id=None, eos_token_id=None)
    hf = LlamaForCausalLM(hf_cfg)
    q_dim, kv_dim = c.n_head * c.head_dim, kv * c.head_dim
    state = {"model.embed_tokens.weight": model.wte.weight, "model.norm.weight": model.ln_f.weight,
             "lm_head.weight": model.lm_head.weight}
    for i, block in enumerate(model.h):
        p = f"model.layers.{i}."
        names = {"weight": block.attn.c_attn.weight, "bias": block.attn.c_attn.bias}
        for suffix, tensor in names.items():
            if tensor is None:
                continue
            q, k, v = tensor.split([q_dim, kv_dim, kv_dim], dim=0)
            state |= {p + f"self_attn.q_proj.{suffix}": q, p + f"self_attn.k_proj.{suffix}": k,
                      p + f"self_attn.v_proj.{suffix}": v}
            gate, up = getattr(block.mlp.c_fc, suffix).chunk(2, dim=0)
            state |= {p + f"mlp.gate_proj.{suffix}": gate, p + f"mlp.up_proj.{suffix}": up,
                      p + f"self_attn.o_proj.{suffix}": getattr(block.attn.c_proj, suffix),
                      p + f"mlp.down_proj.{suffix}": getattr(block.mlp.c_proj, suffix)}
        state |= {p + "input_layernorm.weight": block.ln_1.weight, p + "post_attention_layernorm.weight": block.ln_2.weight}
    result = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    if result.missing_keys:
        raise TailorError(f"Llama export left weights unset: {result.missing_keys[:4]}")
    return hf


@torch.no_grad()
def to_hf(model: Transformer):
    """The equivalent transformers model (eval mode, float32): same logits for the same ids."""
    family = hf_family(model.config)
    hf = _gpt2(model) if family == "gpt2" else _llama(model)
    return hf.eval()


def export_hf(model_dir: Path, out: Path) -> dict:
    """A transformers folder (safetensors, tokenizer, generation config, manifest) that vLLM/TGI serve."""
    import shutil

    from tailor.manifest import write_manifest
    from tailor.models import load_model
    from tailor.tokenizer import Codec

    model = load_model(model_dir)
    codec = Codec.load(model_dir)
    hf = to_hf(model)
    for cfg in (hf.config, hf.generation_config):
        cfg.eos_token_id, cfg.pad_token_id = codec.eos_id, codec.pad_id
        cfg.bos_token_id = codec.eos_id if hf_family(model.config) == "gpt2" else None
    hf.generation_config.do_sample = False
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out, safe_serialization=True)
    shutil.copy2(model_dir / "tokenizer.json", out / "tokenizer.json")
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    card = json.loads((model_dir / "config.json").read_text()).get("tailor", {})
    if card.get("format") == "pairs":  # the prompt format the model was trained on, for chat routes
        tok_cfg["chat_template"] = ("{{ (messages | selectattr('role', 'equalto', 'user') | "
                                    "list | last)['content'] }}" + tok_cfg.get("sep_token", "<|sep|>"))
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    write_manifest(out)
    return {"format": "hf", "architecture": hf.config.architectures[0], "path": str(out)}
