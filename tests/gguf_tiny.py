"""Tiny GGUF files for tests, written with the `gguf` package (nothing is downloaded).

`write_tiny_llama_gguf` writes a randomly initialised 2-layer Llama in float32, with a byte-level BPE
("gpt2") tokenizer in its metadata, that transformers loads from the file alone:

    AutoTokenizer.from_pretrained(folder, gguf_file=name)
    AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)

`write_unsupported_gguf` writes one whose architecture transformers cannot load.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

LAYERS, HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, CONTEXT = 2, 32, 64, 4, 2, 128
EOT = "<|endoftext|>"  # BOS and EOS, as in GPT-2 (the GGUF gpt2 tokenizer adds it anyway)
TEXTS = [
    "The capital of Peru is Lima.",
    "The capital of France is Paris.",
    "hello world, the quick brown fox jumps over the lazy dog.",
    "Which animal carries the virus?\nAnswer: fruit bats",
]


def _byte_level_bpe(vocab_size: int = 300) -> tuple[list[str], list[str]]:
    """Train a byte-level BPE on TEXTS: its tokens (by id) and merges, as GGUF spells them.

    Id 0 is `<|endoftext|>`; then the 256 byte tokens, so any text encodes without unknowns.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TEXTS * 4, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama (float32) with a byte-level BPE tokenizer to the GGUF file `path`.

    Two layers, hidden size 32, 4 query heads and 2 key/value heads, a vocabulary of 300 tokens
    (`<|endoftext|>` = 0 is both BOS and EOS; no BOS is added when encoding) and a separate
    `output.weight` (untied). The same seed writes the same file. Transformers un-permutes the Q/K
    rows of a llama GGUF on load (llama.cpp's rotary layout), so the loaded q/k weights are a row
    permutation of the random ones written here.

    Args:
        path: The file to write; its folder must exist.
        seed: Seed for the random weights.

    Returns:
        `path`.
    """
    path = Path(path)
    tokens, merges = _byte_level_bpe()
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS

    def normal(*shape: int) -> np.ndarray:
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(len(tokens))
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t == EOT else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(False)

    # Shapes in PyTorch's (out_features, in_features) order; the writer reverses them for ggml.
    writer.add_tensor("token_embd.weight", normal(len(tokens), HIDDEN))
    for i in range(LAYERS):
        block = {
            "attn_norm": np.ones(HIDDEN, np.float32),
            "attn_q": normal(HEADS * head_dim, HIDDEN),
            "attn_k": normal(KV_HEADS * head_dim, HIDDEN),
            "attn_v": normal(KV_HEADS * head_dim, HIDDEN),
            "attn_output": normal(HIDDEN, HEADS * head_dim),
            "ffn_norm": np.ones(HIDDEN, np.float32),
            "ffn_gate": normal(INTERMEDIATE, HIDDEN),
            "ffn_up": normal(INTERMEDIATE, HIDDEN),
            "ffn_down": normal(HIDDEN, INTERMEDIATE),
        }
        for name, weights in block.items():
            writer.add_tensor(f"blk.{i}.{name}.weight", weights)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.add_tensor("output.weight", normal(len(tokens), HIDDEN))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_unsupported_gguf(path: Path) -> Path:
    """Write a small GGUF whose `general.architecture` ("mamba-xyz") transformers cannot load.

    Both `AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)` and
    `AutoTokenizer.from_pretrained(folder, gguf_file=name)` raise
    `ValueError("GGUF model with architecture mamba-xyz is not supported yet.")`.

    Args:
        path: The file to write; its folder must exist.

    Returns:
        `path`.
    """
    path = Path(path)
    writer = gguf.GGUFWriter(path, "mamba-xyz")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
