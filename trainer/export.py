"""Export a merged transformers model to GGUF (f16) and quantize it with llama.cpp.

Decoders (Llama, Qwen2) and BERT encoders are supported.

Tensor names come from gguf's own name map; tokenizer metadata (vocabulary,
merges, special tokens, chat template) is copied verbatim from a GGUF that
shares the tokenizer (the base model's), so llama.cpp tokenizes exactly as
the base did.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import gguf
import numpy as np

from inference.errors import ModelError

# transformers model_type -> gguf architecture, and whether q/k need llama's rotary permutation
ARCHITECTURES = {
    "llama": (gguf.MODEL_ARCH.LLAMA, True),
    "qwen2": (gguf.MODEL_ARCH.QWEN2, False),
}
QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def _permute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows from HF's rotate-half layout to llama.cpp's interleaved one."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def copy_tokenizer_metadata(writer: gguf.GGUFWriter, tokenizer_gguf: str | Path) -> None:
    """Copy every tokenizer.* key from another GGUF file."""
    reader = gguf.GGUFReader(str(tokenizer_gguf))
    copied = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub_type)
        copied += 1
    if not copied:
        raise ModelError(f"{tokenizer_gguf} holds no tokenizer metadata to copy")


def _start(tmp: Path, arch, config, name: str, license_id: str, description: str) -> gguf.GGUFWriter:
    """A writer with the keys every exported model carries: identity, license and sizes."""
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    if license_id:
        writer.add_license(license_id)
    if description:
        writer.add_description(description)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    return writer


def _finish(writer: gguf.GGUFWriter, tmp: Path, out_path: Path) -> Path:
    """Write the file under a temporary name, then rename it into place (no half-written GGUF)."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    return out_path


def _tensor_name(name_map: gguf.TensorNameMap, hf_name: str) -> str:
    name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ModelError(f"no GGUF name for tensor {hf_name!r}")
    return name


def write_gguf(model, out_path: str | Path, tokenizer_gguf: str | Path, *, name: str = "tuesday",
               license_id: str = "", description: str = "") -> Path:
    """Write a merged causal LM (transformers, float weights) as an f16 GGUF file."""
    config = model.config
    if config.model_type not in ARCHITECTURES:
        raise ModelError(f"cannot export model_type {config.model_type!r}; supported: {', '.join(ARCHITECTURES)}")
    arch, permute = ARCHITECTURES[config.model_type]
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = getattr(config, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))

    out_path = Path(out_path)
    tmp = out_path.with_suffix(".part")
    writer = _start(tmp, arch, config, name, license_id, description)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    copy_tokenizer_metadata(writer, tokenizer_gguf)

    name_map = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        data = tensor.detach().float().cpu().numpy()
        if permute and hf_name.endswith("q_proj.weight"):
            data = _permute_rotary(data, n_head)
        elif permute and hf_name.endswith("k_proj.weight"):
            data = _permute_rotary(data, n_kv)
        # llama.cpp wants norms and biases in f32; matrices go to f16
        data = data.astype(np.float16 if data.ndim == 2 else np.float32)
        writer.add_tensor(_tensor_name(name_map, hf_name), data)

    return _finish(writer, tmp, out_path)


def _wordpiece_vocab(tokenizer) -> tuple[list[str], list[int]]:
    """BERT's WordPiece vocabulary in llama.cpp's form: '##piece' -> 'piece', a word start gets '▁'."""
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ModelError("the tokenizer's vocabulary ids are not contiguous")
    special = set(tokenizer.all_special_tokens)
    tokens, types = [], []
    for token, _ in by_id:
        if token in special or (token.startswith("[") and token.endswith("]")):
            tokens.append(token)
            types.append(gguf.TokenType.UNKNOWN if token == tokenizer.unk_token else gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def write_encoder_gguf(model, tokenizer, out_path: str | Path, *, name: str = "tuesday-encoder",
                       license_id: str = "", description: str = "") -> Path:
    """Write a merged BERT encoder (transformers BertModel, float weights) as an f16 GGUF with mean pooling."""
    config = model.config
    if config.model_type != "bert":
        raise ModelError(f"cannot export encoder model_type {config.model_type!r}; supported: bert")
    arch = gguf.MODEL_ARCH.BERT
    out_path = Path(out_path)
    tmp = out_path.with_suffix(".part")
    writer = _start(tmp, arch, config, name, license_id, description)
    writer.add_head_count(config.num_attention_heads)
    writer.add_layer_norm_eps(float(config.layer_norm_eps))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)  # sentence-transformers' pooling for MiniLM
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    tokens, types = _wordpiece_vocab(tokenizer)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(config.type_vocab_size)
    for token, add in (("cls", writer.add_bos_token_id), ("sep", writer.add_sep_token_id),
                       ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id),
                       ("mask", writer.add_mask_token_id)):
        token_id = getattr(tokenizer, f"{token}_token_id", None)
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)

    name_map = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name.startswith("pooler.") or hf_name.endswith("position_ids"):
            continue  # the [CLS] pooler is unused with mean pooling
        data = tensor.detach().float().cpu().numpy()
        gguf_name = _tensor_name(name_map, hf_name)
        # llama.cpp adds a row of the token-type table to f32 activations directly: keep it f32
        small = data.ndim < 2 or gguf_name.startswith("token_types")
        writer.add_tensor(gguf_name, data.astype(np.float32 if small else np.float16))

    return _finish(writer, tmp, out_path)


def quantize_gguf(src: str | Path, dst: str | Path, method: str = "q8_0", threads: int = 0) -> Path:
    """Quantize a GGUF file with llama.cpp (q8_0, q4_k_m or q4_0)."""
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)  # otherwise llama.cpp prints a line per tensor
    method = method.lower()
    if method not in QUANT_TYPES:
        raise ModelError(f"unknown quantization {method!r}; choose one of {', '.join(QUANT_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[method])
    params.nthread = threads or (os.cpu_count() or 1)
    dst = Path(dst)
    tmp = dst.with_suffix(".part")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.exists():
        raise ModelError(f"llama.cpp failed to quantize {src} to {method} (code {rc})")
    os.replace(tmp, dst)
    return dst
