"""A tiny random Llama with SmolLM2's tokenizer: built in seconds, never downloaded."""

from __future__ import annotations

from pathlib import Path

from inference.base_models import smollm2_gguf


def build_tiny_llama(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random model as an HF directory and as an f16 GGUF; return both paths."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from trainer.export import write_gguf

    base = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(base.parent, gguf_file=base.name)
    torch.manual_seed(seed)
    # A wide init lets the tied output layer reach confident logits, so a few LoRA steps can
    # visibly lower the loss (with the default 0.02 no logit can exceed about 1.3).
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    hf_dir = out_dir / "tiny-hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    gguf_path = write_gguf(model, out_dir / "tiny-base.gguf", tokenizer_gguf=base, name="tiny-random-llama")
    return hf_dir, gguf_path


def build_tiny_bert(out_dir: Path, seed: int = 0) -> Path:
    """A tiny random BERT with all-MiniLM-L6-v2's tokenizer, as a Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from inference.base_models import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512, type_vocab_size=2)
    model = BertModel(config, add_pooling_layer=False).eval()
    folder = out_dir / "tiny-bert"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
