"""python3 -m vietnamese_ai_worker FILE_OR_MODULE [--connect HOST:PORT] [--token TOKEN]

Serves every MoHinh and MaySinh that FILE_OR_MODULE defines at its top level (or the list it
names `phuc_vu`), to the server in VAI_WORKER_ADDRESS or --connect.

With --connect (an rpc-server's --worker-listen address) the worker is attached: it keeps its
models loaded and reconnects whenever the server is away, until a signal stops it. The token
(one of the server's --worker-tokens) comes from --token or, better kept out of `ps`, from
VAI_WORKER_TOKEN.
"""

import argparse
import importlib
import importlib.util
import os
import sys

from .worker import MaySinh, MoHinh, chay


def load(target):
    if target.endswith(".py") or os.path.sep in target:
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(target))[0], target)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(target)


def main():
    parser = argparse.ArgumentParser(prog="python3 -m vietnamese_ai_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a .py file or an importable module")
    parser.add_argument("--connect", metavar="HOST:PORT", help="an rpc-server's --worker-listen address")
    parser.add_argument("--token", help="the worker token the server expects (default: VAI_WORKER_TOKEN)")
    parser.add_argument("--name", help="this worker's name in the server's logs")
    args = parser.parse_args()
    module = load(args.target)
    served = getattr(module, "phuc_vu", None)
    if served is None:
        served = [value for value in vars(module).values() if isinstance(value, (MoHinh, MaySinh))]
    if not served:
        raise SystemExit("%s defines no MoHinh or MaySinh" % args.target)
    try:
        chay(*served, address=args.connect, token=args.token, name=args.name)
    except ConnectionError as problem:
        raise SystemExit(str(problem))


if __name__ == "__main__":
    main()
