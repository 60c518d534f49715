#!/usr/bin/env python3
"""Writes a small llama-architecture GGUF model with seeded random weights, for the real-runner
tests: nothing is downloaded, and the same arguments always write the same file.

  make_model.py OUT.gguf [--size=tiny|large] [--seed=N]

tiny:  2 layers, 64 wide, 512-token vocabulary, F16 weights (under 1 MB): the CI model.
large: 16 layers, 2048 wide, 32000-token vocabulary, F16 (about 1.4 GB): the GPU comparison.

The vocabulary is the project's own SentencePiece-style (SPM) one: <unk>, <s>, </s>, the 256 byte
tokens <0x00>..<0xFF> that SPM falls back to, then the printable ASCII characters and common
English words with the '\u2581' word-start mark, scored so that longer pieces win. Weights are
normal with a small scale (0.02), which keeps greedy decoding stable and deterministic.
"""

import argparse
import sys

import numpy as np
import gguf

SIZES = {
    # layers, width, feed-forward width, heads, kv heads, vocabulary, context
    "tiny": dict(layers=2, width=64, ff=128, heads=4, kv_heads=2, vocab=512, context=512),
    "large": dict(layers=16, width=2048, ff=5632, heads=16, kv_heads=4, vocab=32000, context=2048),
}

WORDS = ("the of and to in is was for on that with as by at from his her it an be this are or "
         "had not but which one all were they has we been their there more some time would "
         "about into up out can only other new so what when who will no if than them these "
         "hello world model token broker runner device memory kernel stream graph").split()


def vocabulary(size):
    pieces = [("<unk>", 0.0, gguf.TokenType.UNKNOWN), ("<s>", 0.0, gguf.TokenType.CONTROL),
              ("</s>", 0.0, gguf.TokenType.CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, gguf.TokenType.BYTE) for b in range(256)]
    normal = ["\u2581"] + [chr(c) for c in range(33, 127)]
    normal += ["\u2581" + chr(c) for c in range(97, 123)]
    normal += ["\u2581" + w for w in WORDS]
    seen = set()
    ordered = []
    for p in normal:
        if p not in seen:
            seen.add(p)
            ordered.append(p)
    # Filler pieces up to the size: two-letter pieces, deterministic.
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    for a in letters:
        for b in letters:
            if len(pieces) + len(ordered) >= size:
                break
            for candidate in (a + b, "\u2581" + a + b):
                if candidate not in seen and len(pieces) + len(ordered) < size:
                    seen.add(candidate)
                    ordered.append(candidate)
    for n in range(size):
        if len(pieces) + len(ordered) >= size:
            break
        ordered.append(f"\u2581w{n}")
    for p in ordered[: size - len(pieces)]:
        pieces.append((p, float(len(p)) - 100.0, gguf.TokenType.NORMAL))
    return pieces


def write(path, size, seed):
    s = SIZES[size]
    rng = np.random.default_rng(seed)
    head_dim = s["width"] // s["heads"]
    kv_width = head_dim * s["kv_heads"]

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"gpubroker-test-{size}")
    writer.add_context_length(s["context"])
    writer.add_embedding_length(s["width"])
    writer.add_block_count(s["layers"])
    writer.add_feed_forward_length(s["ff"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    pieces = vocabulary(s["vocab"])
    writer.add_tokenizer_model("llama")
    writer.add_token_list([p[0] for p in pieces])
    writer.add_token_scores([p[1] for p in pieces])
    writer.add_token_types([int(p[2]) for p in pieces])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def weight(rows, cols):  # numpy (rows, cols) is ggml's [cols, rows]
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def norm(n):
        return np.ones(n, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(s["vocab"], s["width"]))
    for layer in range(s["layers"]):
        b = f"blk.{layer}."
        writer.add_tensor(b + "attn_norm.weight", norm(s["width"]))
        writer.add_tensor(b + "attn_q.weight", weight(s["width"], s["width"]))
        writer.add_tensor(b + "attn_k.weight", weight(kv_width, s["width"]))
        writer.add_tensor(b + "attn_v.weight", weight(kv_width, s["width"]))
        writer.add_tensor(b + "attn_output.weight", weight(s["width"], s["width"]))
        writer.add_tensor(b + "ffn_norm.weight", norm(s["width"]))
        writer.add_tensor(b + "ffn_gate.weight", weight(s["ff"], s["width"]))
        writer.add_tensor(b + "ffn_up.weight", weight(s["ff"], s["width"]))
        writer.add_tensor(b + "ffn_down.weight", weight(s["width"], s["ff"]))
    writer.add_tensor("output_norm.weight", norm(s["width"]))
    writer.add_tensor("output.weight", weight(s["vocab"], s["width"]))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args(argv)
    write(args.out, args.size, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
