"""Python models and generators behind rpc-server's batcher, rate limiter and streams.

    from vietnamese_ai_worker import MoHinh, chay

    def ham_du_doan(batch_inputs):
        return [x.upper() for x in batch_inputs]

    mo_hinh = MoHinh(ten="hoa", ham_du_doan=ham_du_doan, kich_thuoc_batch=32)

    if __name__ == "__main__":
        chay(mo_hinh)

or `python3 -m vietnamese_ai_worker FILE_OR_MODULE`, which serves every MoHinh and MaySinh the
module defines. The protocol is in Protocol/PROTOCOL.md §11; this package uses the standard
library only.
"""

from .worker import InputError, MaySinh, MoHinh, Refused, Worker, chay, da_huy, han_chot

__all__ = ["InputError", "MaySinh", "MoHinh", "Refused", "Worker", "chay", "da_huy", "han_chot"]
