"""Small llama-architecture models in GGUF, generated (random weights), for a real engine in the dev cluster.

llama.cpp loads and runs them like any Llama: a SentencePiece-style vocabulary (byte fallback, so any text
tokenizes), a chat template, and every tensor of a Llama block in F16. The weights are pseudo-random, so the
tokens are noise; what a data plane needs from an engine (a file whose download and first token grow with
its size, a token stream, the engine's own errors) is real. The same arguments give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

FILE = "model.gguf"  # the one file of a generated repository (what the dev runtime's --model names)
HEAD_DIM = 64
LAYERS = 4
CONTEXT = 2048
SPECIAL = ("<unk>", "<s>", "</s>")
WORDS_TEXT = (  # the generated vocabulary: what a random-weight model says
    "the of and to in is that for it as with was on be by at this are from or an have not but they which "
    "one all were we when there can more if no out so what up about into than them time only some could "
    "new two model token stream cold start node cache front door scale zero wake queue drain pod runtime "
    "engine"
)
NEVER_SAMPLED = len(SPECIAL) + 256  # the special and byte tokens come first in the vocabulary
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class Shape:
    embedding: int
    layers: int
    vocab: int

    @property
    def feed_forward(self) -> int:
        return 4 * self.embedding


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types (llama.cpp's: 1 normal, 2 unknown, 3 control, 6 byte) of the generated
    vocabulary."""
    words = ["\u2581"] + [f"\u2581{w}" for w in WORDS_TEXT.split()]
    tokens = [*SPECIAL, *(f"<0x{b:02X}>" for b in range(256)), *words]
    types = [2, 3, 3] + [6] * 256 + [1] * len(words)
    scores = [0.0] * NEVER_SAMPLED + [-float(i) for i in range(len(words))]
    return tokens, scores, types


def shape_for(size_mib: float) -> Shape:
    """The embedding width (a multiple of the head size) whose model is about `size_mib` MiB in F16."""
    vocab = len(vocabulary()[0])
    target = size_mib * 2**20 / 2  # F16 parameters
    # layers * 16 d^2 + 2 * vocab * d = target, solved for d
    a, b = 16 * LAYERS, 2 * vocab
    width = (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)
    return Shape(max(HEAD_DIM, round(width / HEAD_DIM) * HEAD_DIM), LAYERS, vocab)


def generate_gguf(folder: Path, size_mib: float, seed: int = 0, name: str = "hearth-dev-llama") -> Path:
    """Writes `folder/model.gguf`, a Llama of about `size_mib` MiB with pseudo-random F16 weights."""
    import gguf  # the dev cluster's hub only: not in Hearth's image
    import numpy as np

    shape = shape_for(size_mib)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILE
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_name(name)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(shape.embedding)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.feed_forward)
    heads = shape.embedding // HEAD_DIM
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, scores, types = vocabulary()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)  # the chat template writes it
    writer.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(seed)

    def weights(*dims: int) -> npt.NDArray[np.float16]:
        return (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16)

    def norm() -> npt.NDArray[np.float32]:
        return np.ones(shape.embedding, dtype=np.float32)

    d, ff = shape.embedding, shape.feed_forward
    # Only words are ever generated (no byte, control or end token): every embedding carries a constant
    # first component that survives the blocks (their weights are small), and the output rows of the tokens
    # never to be sampled point against it. Random bytes would make llama-cpp-python hold back text that is
    # not yet valid UTF-8 (a stream that goes quiet, then a detokenization that slows with every token), and
    # an end token at random would make answers shorter than asked.
    embedding = weights(shape.vocab, d)
    embedding[:, 0] = 1.0
    writer.add_tensor("token_embd.weight", embedding)
    for block in range(shape.layers):
        for part, dims in (
            ("attn_q", (d, d)),
            ("attn_k", (d, d)),
            ("attn_v", (d, d)),
            ("attn_output", (d, d)),
            ("ffn_gate", (ff, d)),
            ("ffn_up", (ff, d)),
            ("ffn_down", (d, ff)),
        ):
            writer.add_tensor(f"blk.{block}.{part}.weight", weights(*dims))
        writer.add_tensor(f"blk.{block}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", norm())
    writer.add_tensor("output_norm.weight", norm())
    output = weights(shape.vocab, d)
    output[:NEVER_SAMPLED, 0] = -5.0
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
