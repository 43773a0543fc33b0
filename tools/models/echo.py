"""The smallest worker: a model that returns its inputs, with the standard library only.

    rpc-server --worker echo-py="python3 -m vietnamese_ai_worker tools/models/echo.py"
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from vietnamese_ai_worker import MoHinh, chay  # noqa: E402


def ham_du_doan(batch_inputs):
    return list(batch_inputs)


mo_hinh = MoHinh(ten=os.environ.get("VAI_WORKER_MODEL", "echo-py"), ham_du_doan=ham_du_doan,
                 dau_vao="bytes", ket_qua="bytes")

if __name__ == "__main__":
    chay(mo_hinh)
